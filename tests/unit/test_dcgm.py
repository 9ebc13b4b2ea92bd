"""GPU telemetry of a host we do not run on: a dcgm-exporter page (its documented format:
``DCGM_FI_DEV_*`` gauges and the energy counter, labelled ``gpu``, ``UUID``, ``device``,
``modelName``, ``Hostname``) served over HTTP by a local server whose readings move by a known
step at every read.  The window's GPU figures, metrics and SLOs must follow from those steps,
on a machine without a GPU."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pytest_llmperf.observe.dcgm import DcgmSampler
from pytest_llmperf.observe.telemetry import Telemetry
from pytest_llmperf.results.slo import evaluate
from pytest_llmperf.results.thresholds import parse_check
from tests.fakes.metrics_page import serving_page


class NoNvml:
    """pynvml on a machine without a GPU driver."""

    def nvmlInit(self) -> None:
        raise OSError("NVML Shared Library Not Found")


def exporter_page(read: int) -> str:
    """The exporter's page at its ``read``-th request: two H100s on node-a; GPU 0's
    utilisation is 10 x read %, its memory 1000 + 100 x read MiB of 81559, its power
    100 + read W, its energy counter 250 J a read; GPU 1 sits idle at 0 %, 500 MiB, 60 W."""
    lines = []
    gpus = (("0", "GPU-aaaa", 10.0 * read, 1000 + 100 * read, 100.0 + read,
             5_000_000 + 250_000 * read),
            ("1", "GPU-bbbb", 0.0, 500, 60.0, 9_000_000 + 60_000 * read))
    fields = (("DCGM_FI_DEV_GPU_UTIL", "gauge", 2), ("DCGM_FI_DEV_FB_USED", "gauge", 3),
              ("DCGM_FI_DEV_FB_FREE", "gauge", None), ("DCGM_FI_DEV_POWER_USAGE", "gauge", 4),
              ("DCGM_FI_DEV_GPU_TEMP", "gauge", None), ("DCGM_FI_DEV_SM_CLOCK", "gauge", None),
              ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", 5))
    for name, kind, column in fields:
        lines += [f"# HELP {name} {name}.", f"# TYPE {name} {kind}"]
        for gpu in gpus:
            labels = (f'gpu="{gpu[0]}",UUID="{gpu[1]}",device="nvidia{gpu[0]}",'
                      f'modelName="NVIDIA H100 80GB HBM3",Hostname="node-a",'
                      f'DCGM_FI_DRIVER_VERSION="550.54.15"')
            if column is not None:
                value: float = gpu[column]  # type: ignore[assignment]
            elif name == "DCGM_FI_DEV_FB_FREE":
                value = 81559 - gpu[3]  # type: ignore[operator]
            else:
                value = 65 if name == "DCGM_FI_DEV_GPU_TEMP" else 1980
            lines.append(f"{name}{{{labels}}} {value:g}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def exporter() -> Iterator[tuple[str, list[int]]]:
    """The exporter's URL and the reads it has answered (one entry each)."""
    with serving_page(exporter_page, "text/plain; version=0.0.4; charset=utf-8") as served:
        yield served


def test_a_remote_exporter_s_gpus_give_the_window_s_gpu_metrics(
        exporter: tuple[str, list[int]]) -> None:
    url, reads = exporter
    with Telemetry.for_pid(None, scope="attached", interval_s=0.05, nvml=NoNvml(),
                           dcgm_urls=[url]) as telemetry:
        telemetry.baseline(samples=2, interval_s=0.01)  # reads 0 and 1, not in the window
        telemetry.window_started()
        while len(reads) < 8:
            threading.Event().wait(0.01)
        telemetry.window_ended()
        result = telemetry.result(output_tokens=1000)
    window_reads = list(range(2, 2 + result.samples))
    assert len(reads) == 2 + result.samples
    busy, idle = result.gpus
    assert (busy.name, busy.uuid, busy.index) == (
        "NVIDIA H100 80GB HBM3 (gpu 0 on node-a)", "GPU-aaaa", 0)
    assert idle.name == "NVIDIA H100 80GB HBM3 (gpu 1 on node-a)"
    assert busy.memory_total_mib == 81559
    assert busy.util_pct is not None and busy.util_pct.peak == 10.0 * window_reads[-1]
    assert busy.util_pct.mean == pytest.approx(10.0 * sum(window_reads) / len(window_reads))
    assert busy.memory_used_mib is not None
    assert busy.memory_used_mib.peak == 1000 + 100 * window_reads[-1]
    # The energy counter's difference over the window's first and last read: 250 J a read.
    assert busy.energy_j == pytest.approx(250.0 * (len(window_reads) - 1))
    assert busy.energy_source == "DCGM energy counter"
    assert busy.process_memory_mib is None  # not on DCGM's page: absent, not zero
    assert result.gpu_unavailable_reason is None and result.error is None
    metrics = result.metrics
    assert metrics["gpu_util_mean"] == pytest.approx((busy.util_pct.mean + 0.0) / 2)
    assert metrics["gpu_memory_peak_mib"] == busy.memory_used_mib.peak + 500
    assert metrics["energy_j"] == pytest.approx(250.0 * (len(window_reads) - 1)
                                                + 60.0 * (len(window_reads) - 1))
    assert metrics["energy_j_per_token"] == pytest.approx(metrics["energy_j"] / 1000)


def test_gpu_slos_hold_a_remote_host_s_gpus(exporter: tuple[str, list[int]]) -> None:
    url, reads = exporter
    with Telemetry.for_pid(None, scope="attached", interval_s=0.05, nvml=NoNvml(),
                           dcgm_urls=[url]) as telemetry:
        telemetry.window_started()
        while len(reads) < 4:
            threading.Event().wait(0.01)
        telemetry.window_ended()
        result = telemetry.result()
    from pytest_llmperf.results.metrics import RunMetrics

    metrics = RunMetrics({}, {}, ()).with_resources(result.metrics)
    verdicts = evaluate(metrics, [parse_check("gpu_memory_peak_mib < 100000", "t"),
                                  parse_check("gpu_memory_peak_mib < 1000", "t")],
                        unmeasured=result.unmeasured_reasons())
    assert [v.state for v in verdicts] == ["pass", "fail"]


def test_a_failed_exporter_read_is_a_gap_and_a_note() -> None:
    pages = iter([exporter_page(0), None, exporter_page(2)])

    def fetch(url: str, timeout_s: float) -> str:
        page = next(pages)
        if page is None:
            raise ConnectionResetError("reset")
        return page

    sampler = DcgmSampler(["http://node-a:9400/metrics"], fetch=fetch)
    sampler.start()
    for t in (0.0, 0.5, 1.0):
        sampler.sample(t)
    busy, _ = sampler.finish()
    assert sampler.failed_reads == 1
    assert busy.util_pct is not None and busy.util_pct.peak == 20.0
    assert busy.util_pct.mean == pytest.approx(10.0)  # reads 0 and 2; the gap is not a zero
    assert sampler.timeline()[0].util_pct == (0.0, None, 20.0)

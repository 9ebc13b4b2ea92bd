"""Telemetry samplers driven by scripted NVML and psutil fakes; the no-GPU path on this host."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pynvml
import pytest

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.observe.gpu import GpuSampler, open_gpu_sampler
from pytest_llmperf.observe.gpus import gpu_inventory
from pytest_llmperf.observe.process import ProcessSampler, cgroup_memory_limit, measured_pid
from pytest_llmperf.observe.telemetry import METRICS, Telemetry, host_gpu_facts
from pytest_llmperf.report.charts import write_timeline_png
from pytest_llmperf.results.resources import MeanPeak, Resources

MIB = 2**20
GPU_KEYS = {"gpu_memory_peak_mib", "gpu_process_memory_peak_mib", "gpu_util_mean",
            "gpu_power_mean_w", "energy_j", "energy_j_per_token"}

# --- fakes ---------------------------------------------------------------------------------


@dataclass
class FakeGpu:
    """One GPU's current readings; None makes NVML answer NotSupported for that field."""

    util: float | None = 50.0
    used_mib: float | None = 1000.0
    total_mib: int = 80 * 1024
    power_w: float | None = 300.0
    temperature: int | None = 60
    sm_clock: int | None = 1980
    energy_mj: float | None = 1_000_000.0
    processes: list[tuple[int, int]] | None = field(default_factory=list)  # (pid, MiB)
    nvlinks: dict[int, str] = field(default_factory=dict)  # link -> remote bus id


def _supported(value: Any) -> Any:
    if value is None:
        raise pynvml.NVMLError_NotSupported()
    return value


class FakeNvml:
    """The slice of pynvml the samplers call; handles are GPU indices."""

    def __init__(self, *gpus: FakeGpu, cuda: int = 12040) -> None:
        self.gpus = list(gpus)
        self.cuda = cuda
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, h: int) -> str:
        return f"Fake GPU {h}"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h:04d}"

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        gpu = self.gpus[h]
        used = _supported(gpu.used_mib)
        return SimpleNamespace(total=gpu.total_mib * MIB, used=int(used * MIB))

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        self.calls.append("util")
        return SimpleNamespace(gpu=_supported(self.gpus[h].util), memory=0)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return int(_supported(self.gpus[h].power_w) * 1000)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return int(_supported(self.gpus[h].temperature))

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        assert clock == pynvml.NVML_CLOCK_SM
        return int(_supported(self.gpus[h].sm_clock))

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return int(_supported(self.gpus[h].energy_mj))

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        processes = _supported(self.gpus[h].processes)
        return [SimpleNamespace(pid=pid, usedGpuMemory=mib * MIB) for pid, mib in processes]

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: int) -> int:
        return 5

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: int) -> int:
        return 16

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: int) -> int:
        return 5

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: int) -> int:
        raise pynvml.NVMLError_NotSupported()

    def nvmlDeviceGetPciInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(busId=f"00000000:{h + 1:02X}:00.0".encode())

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        if link >= 4:
            raise pynvml.NVMLError_InvalidArgument()
        return pynvml.NVML_FEATURE_ENABLED if link in self.gpus[h].nvlinks else 0

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: int, link: int) -> SimpleNamespace:
        return SimpleNamespace(busId=self.gpus[h].nvlinks[link])


@dataclass
class FakeProcess:
    pid: int
    cpu_s: float = 0.0
    rss_mib: float = 100.0
    born: float = 1.0
    kids: list[FakeProcess] = field(default_factory=list)
    gone: bool = False  # exits between being listed and being read

    def children(self, recursive: bool = False) -> list[FakeProcess]:
        assert recursive, "engines fork grandchildren: the tree must be listed recursively"
        return [p for kid in self.kids for p in (kid, *kid.children(recursive=True))]

    def _alive(self) -> None:
        if self.gone:
            raise psutil.NoSuchProcess(self.pid)

    def cpu_times(self) -> SimpleNamespace:
        self._alive()
        return SimpleNamespace(user=self.cpu_s * 0.75, system=self.cpu_s * 0.25)

    def memory_info(self) -> SimpleNamespace:
        self._alive()
        return SimpleNamespace(rss=int(self.rss_mib * MIB))

    def create_time(self) -> float:
        self._alive()
        return self.born


class FakePsutil:
    def __init__(self, *roots: FakeProcess, total_mib: float = 16384) -> None:
        self.roots = {p.pid: p for p in roots}
        self.system_cpu = 25.0
        self.total_mib = total_mib
        self.used_mib = 4096.0

    def Process(self, pid: int) -> FakeProcess:
        if pid not in self.roots:
            raise psutil.NoSuchProcess(pid)
        return self.roots[pid]

    def cpu_percent(self, interval: float | None = None) -> float:
        return self.system_cpu

    def virtual_memory(self) -> SimpleNamespace:
        return SimpleNamespace(total=int(self.total_mib * MIB),
                               available=int((self.total_mib - self.used_mib) * MIB))


def gpu_sampler(nvml: FakeNvml, pids: Callable[[], set[int]] = set) -> GpuSampler:
    sampler = open_gpu_sampler(nvml, tree_pids=pids)
    assert isinstance(sampler, GpuSampler), sampler
    return sampler


def telemetry(nvml: FakeNvml | None, ps: FakePsutil, pid: int | None = 10,
              tmp_path: Path | None = None) -> Telemetry:
    process = ProcessSampler(pid, scope="launched server", source=ps,
                             cgroup_root=tmp_path or Path("/nonexistent"))
    gpu = "no NVIDIA GPU: fake" if nvml is None else gpu_sampler(nvml, lambda: set(process.pids))
    return Telemetry(process, gpu, interval_s=0.02)


def run_window(t: Telemetry, seconds: float = 0.12) -> Resources:
    t.window_started()
    time.sleep(seconds)
    t.window_ended()
    return t.result()


# --- process tree ----------------------------------------------------------------------------


def test_tree_cpu_is_per_core_and_summed_over_the_tree() -> None:
    worker = FakeProcess(11)
    root = FakeProcess(10, kids=[worker])
    sampler = ProcessSampler(10, scope="launched server", source=FakePsutil(root))
    sampler.start()
    sampler.sample(0.0)
    root.cpu_s, worker.cpu_s = 0.5, 1.0  # 1.5 CPU s in 1 s: one and a half cores
    sampler.sample(1.0)
    server, _ = sampler.finish()
    assert server.cpu_pct == MeanPeak(mean=150.0, peak=150.0)
    assert server.rss_mib is not None and server.rss_mib.peak == 200.0
    assert server.processes_peak == 2
    server_cpu_pct, _ = sampler.timeline()
    assert server_cpu_pct == (None, 150.0)  # the first sets references


def test_tree_is_listed_again_at_every_sample() -> None:
    root = FakeProcess(10)
    ps = FakePsutil(root)
    sampler = ProcessSampler(10, scope="launched server", source=ps)
    sampler.start()
    sampler.sample(0.0)
    root.cpu_s = 0.2
    # A worker born mid-window, with a grandchild: all their CPU time is the window's.
    root.kids.append(FakeProcess(11, cpu_s=0.3, born=2.0, kids=[FakeProcess(12, cpu_s=0.5)]))
    sampler.sample(1.0)
    assert sampler.pids == {10, 11, 12}
    assert sampler.timeline()[0][-1] == 100.0  # the server's CPU %
    root.kids[0].gone = True  # exits between the listing and the reading: left out
    root.kids[0].kids[0].cpu_s = 0.75
    sampler.sample(2.0)
    assert sampler.pids == {10, 12}
    server_cpu_pct, server_rss_mib = sampler.timeline()
    assert server_cpu_pct[-1] == 25.0
    assert server_rss_mib == (100.0, 300.0, 200.0)
    assert sampler.finish()[0].processes_peak == 3


def test_a_reused_pid_is_a_new_process() -> None:
    root = FakeProcess(10, kids=[FakeProcess(11, cpu_s=5.0, born=1.0)])
    sampler = ProcessSampler(10, scope="launched server", source=FakePsutil(root))
    sampler.start()
    sampler.sample(0.0)
    root.kids = [FakeProcess(11, cpu_s=0.5, born=3.0)]  # pid 11 died; a new 11 was born
    sampler.sample(1.0)
    assert sampler.timeline()[0][-1] == 50.0  # the server's CPU %


def test_short_intervals_leave_the_cpu_rate_to_the_next_reading() -> None:
    root = FakeProcess(10)
    sampler = ProcessSampler(10, scope="launched server", source=FakePsutil(root))
    sampler.start()
    sampler.sample(0.0)
    root.cpu_s = 0.01
    sampler.sample(0.01)  # one clock tick in 10 ms would read as 100 %
    root.cpu_s = 1.0
    sampler.sample(2.0)
    root.cpu_s = 1.5
    sampler.sample(3.0)
    assert sampler.timeline()[0] == (None, None, 50.0, 50.0)  # the server's CPU %
    # CPU time / time: the 2 s interval weighs twice the 1 s one.
    assert sampler.finish()[0].cpu_pct == MeanPeak(mean=50.0, peak=50.0)
    root.cpu_s = 1.5
    sampler.start()
    sampler.sample(0.0)
    root.cpu_s = 3.5  # 2 cores for 1 s ...
    sampler.sample(1.0)
    root.cpu_s = 3.5  # ... then idle for 3 s: 2 CPU s / 4 s = 50 %
    sampler.sample(4.0)
    assert sampler.finish()[0].cpu_pct == MeanPeak(mean=50.0, peak=200.0)


def test_a_vanished_server_leaves_its_figures_absent() -> None:
    ps = FakePsutil()
    sampler = ProcessSampler(10, scope="launched server", source=ps)
    sampler.start()
    sampler.sample(0.0)
    sampler.sample(1.0)
    server, system = sampler.finish()
    assert server.cpu_pct is None and server.rss_mib is None
    assert system.cpu_pct == MeanPeak(mean=25.0, peak=25.0)


def test_measured_process_for_each_kind_of_engine() -> None:
    assert measured_pid(1234, in_process=False) == (1234, "launched server")
    assert measured_pid(None, in_process=True)[0] == os.getpid()
    pid, scope = measured_pid(None, in_process=False)
    assert pid is None and "no process metrics" in scope
    attached = ServedModel(backend="openai", model="m", engine="remote",
                           endpoint=Endpoint(base_url="http://127.0.0.1:1/v1", model="m"))
    with Telemetry.for_served(attached) as t:
        result = run_window(t, 0.06)
    assert result.server.pid is None and "attached" in result.server.scope
    assert not {"server_cpu_mean_pct", "server_rss_peak_mib"} & result.metrics.keys()
    assert "system_cpu_mean_pct" in result.metrics
    in_process = ServedModel(backend="transformers", model="m", engine="hf", endpoint=None)
    with Telemetry.for_served(in_process) as t:
        assert run_window(t, 0.06).server.pid == os.getpid()


def test_real_process_tree_gains_a_child_mid_window() -> None:
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, time; time.sleep(0.3); "
                               "subprocess.run(['sleep', '60'])"])
    try:
        sampler = ProcessSampler(parent.pid, scope="launched server")
        sampler.start()
        sampler.sample(0.0)
        assert sampler.pids == {parent.pid}
        deadline = time.monotonic() + 30
        while len(sampler.pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            sampler.sample(time.monotonic())
        assert len(sampler.pids) == 2, "the child never appeared in the tree"
        rss_mib = sampler.finish()[0].rss_mib
        assert rss_mib is not None and rss_mib.peak > 1
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()


# --- cgroup ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("files", "expected"), [
    ({"memory.max": "max\n"}, None),
    ({"memory.max": "1073741824\n"}, 2**30),
    ({"memory/memory.limit_in_bytes": "536870912\n"}, 2**29),
    ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1 "unlimited"
    ({"memory.max": "garbage", "memory/memory.limit_in_bytes": "4096"}, 4096),
    ({}, None),
])
def test_cgroup_memory_limit(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_memory_limit(tmp_path) == expected


def test_memory_limit_is_the_smaller_of_ram_and_cgroup(tmp_path: Path) -> None:
    ps = FakePsutil(total_mib=16384)
    (tmp_path / "memory.max").write_text(str(2048 * MIB))
    sampler = ProcessSampler(None, scope="none", source=ps, cgroup_root=tmp_path)
    assert sampler.memory_limit_mib() == 2048
    (tmp_path / "memory.max").write_text(str(10**15))
    assert sampler.memory_limit_mib() == 16384


# --- GPU sampler -----------------------------------------------------------------------------


def test_unsupported_fields_are_absent_and_zero_stays_zero() -> None:
    nvml = FakeNvml(FakeGpu(util=0.0, power_w=None, energy_mj=None, temperature=None))
    sampler = gpu_sampler(nvml)
    sampler.start()
    for t in (0.0, 0.5, 1.0):
        sampler.sample(t)
    (gpu,) = sampler.finish()
    assert gpu.util_pct == MeanPeak(mean=0.0, peak=0.0)
    assert gpu.power_w is None and gpu.temperature_c is None
    assert gpu.energy_j is None  # no counter and no power to integrate
    assert gpu.process_memory_mib is None  # no tree to filter on
    assert gpu.sm_clock_mhz is not None and gpu.sm_clock_mhz.peak == 1980
    assert gpu.name == "Fake GPU 0" and gpu.memory_total_mib == 80 * 1024


def test_energy_from_the_counter() -> None:
    fake = FakeGpu(energy_mj=1_000_000.0)
    sampler = gpu_sampler(FakeNvml(fake))
    sampler.start()
    sampler.sample(0.0)
    fake.energy_mj = 1_450_000.0
    sampler.sample(1.0)
    (gpu,) = sampler.finish()
    assert gpu.energy_j == 450.0 and gpu.energy_source == "NVML energy counter"


def test_energy_integrates_power_without_a_counter() -> None:
    fake = FakeGpu(energy_mj=None, power_w=100.0)
    sampler = gpu_sampler(FakeNvml(fake))
    sampler.start()
    sampler.sample(0.0)
    fake.power_w = 200.0
    sampler.sample(1.0)
    fake.power_w = None  # one reading refused: skipped, not read as 0 W
    sampler.sample(1.5)
    fake.power_w = 200.0
    sampler.sample(2.0)
    (gpu,) = sampler.finish()
    assert gpu.energy_j == 150.0 + 200.0
    assert gpu.energy_source == "integrated power samples"


def test_process_gpu_memory_counts_only_the_server_tree() -> None:
    fake = FakeGpu(processes=[(10, 1000), (11, 24), (99, 5000)])
    sampler = gpu_sampler(FakeNvml(fake), lambda: {10, 11, 12})
    sampler.start()
    sampler.sample(0.0)
    fake.processes = [(99, 5000)]  # none of ours on this GPU now: a real 0
    sampler.sample(1.0)
    fake.processes = None  # the list refused (no permission): absent
    sampler.sample(2.0)
    (gpu,) = sampler.finish()
    assert gpu.process_memory_mib == MeanPeak(mean=512.0, peak=1024.0)


# --- Telemetry: windows, metrics, baseline -------------------------------------------------


def test_only_readings_inside_the_window_count() -> None:
    fake = FakeGpu(util=10.0)
    nvml = FakeNvml(fake)
    t = telemetry(nvml, FakePsutil(FakeProcess(10)))
    time.sleep(0.05)
    fake.util = 50.0
    result = run_window(t)
    fake.util = 99.0
    calls = len(nvml.calls)
    time.sleep(0.1)
    assert len(nvml.calls) == calls, "sampling went on after the window ended"
    assert result.gpus[0].util_pct == MeanPeak(mean=50.0, peak=50.0)
    assert result.samples >= 2
    assert result.timeline is not None
    assert len(result.timeline.t_s) == result.samples
    assert result.timeline.gpus[0].util_pct == (50.0,) * result.samples
    assert 0.1 <= result.duration_s < 10


def test_two_windows_get_their_own_figures() -> None:
    fake = FakeGpu(util=30.0, energy_mj=0.0)
    t = telemetry(FakeNvml(fake), FakePsutil(FakeProcess(10)))
    t.window_started()
    fake.energy_mj = 100_000.0
    t.window_ended()
    first = t.result()
    fake.util, fake.energy_mj = 70.0, 150_000.0  # between the windows: counted by neither
    t.window_started()
    fake.energy_mj = 160_000.0
    t.window_ended()
    second = t.result()
    assert first.metrics["gpu_util_mean"] == 30.0
    assert second.metrics["gpu_util_mean"] == 70.0
    assert first.metrics["energy_j"] == 100.0
    assert second.metrics["energy_j"] == 10.0


def test_metrics_over_several_gpus() -> None:
    gpus = [FakeGpu(util=20.0, used_mib=1000.0, power_w=100.0, processes=[(10, 800)]),
            FakeGpu(util=60.0, used_mib=3000.0, power_w=300.0, processes=[(11, 2900)])]
    ps = FakePsutil(FakeProcess(10, kids=[FakeProcess(11)]))
    t = telemetry(FakeNvml(*gpus), ps)
    t.window_started()
    for gpu in gpus:
        gpu.energy_mj = (gpu.energy_mj or 0) + 500_000
    time.sleep(0.1)  # CPU rates need readings 50 ms apart
    t.window_ended()
    metrics = t.result(output_tokens=2000).metrics
    assert metrics["gpu_util_mean"] == 40.0
    assert metrics["gpu_memory_peak_mib"] == 4000.0
    assert metrics["gpu_process_memory_peak_mib"] == 3700.0
    assert metrics["gpu_power_mean_w"] == 400.0
    assert metrics["energy_j"] == 1000.0
    assert metrics["energy_j_per_token"] == 0.5
    assert metrics["server_rss_peak_mib"] == 200.0
    assert metrics["system_cpu_mean_pct"] == 25.0
    assert metrics["system_memory_peak_mib"] == 4096.0
    assert set(metrics) <= set(METRICS)
    assert "energy_j_per_token" not in t.result().metrics  # no token count given


def test_a_figure_missing_on_one_gpu_is_missing_for_all() -> None:
    gpus = [FakeGpu(power_w=100.0, energy_mj=None), FakeGpu(power_w=None, energy_mj=None)]
    t = telemetry(FakeNvml(*gpus), FakePsutil(FakeProcess(10)))
    metrics = run_window(t, 0.06).metrics
    assert "gpu_power_mean_w" not in metrics and "energy_j" not in metrics
    assert "gpu_util_mean" in metrics


def test_baseline_is_kept_apart_from_the_window() -> None:
    fake = FakeGpu(util=5.0, power_w=60.0)
    t = telemetry(FakeNvml(fake), FakePsutil(FakeProcess(10)))
    baseline = t.baseline(samples=2, interval_s=0.01)
    fake.util, fake.power_w = 80.0, 400.0
    result = run_window(t, 0.06)
    idle_util = baseline.gpus[0].util_pct
    assert idle_util is not None and idle_util.mean == 5.0
    assert result.idle is not None
    assert result.idle.metrics["gpu_power_mean_w"] == 60.0
    assert result.metrics["gpu_util_mean"] == 80.0
    assert result.idle.timeline is None


def test_misuse_is_reported() -> None:
    t = telemetry(None, FakePsutil(FakeProcess(10)))
    with pytest.raises(RuntimeError, match="no measured window"):
        t.result()
    with pytest.raises(RuntimeError, match="without window_started"):
        t.window_ended()
    t.window_started()
    with pytest.raises(RuntimeError, match="twice"):
        t.window_started()
    t.close()  # ends the open window
    assert t.result().gpu_unavailable_reason == "no NVIDIA GPU: fake"


def test_a_failing_reading_is_reported_not_raised() -> None:
    class Broken(FakeProcess):
        def children(self, recursive: bool = False) -> list[FakeProcess]:
            raise RuntimeError("boom")  # a bug, not a vanished process

    t = telemetry(None, FakePsutil(Broken(10)))
    result = run_window(t, 0.06)
    assert result.error == "telemetry sampling failed: RuntimeError: boom"


# --- no GPU here, host facts -----------------------------------------------------------------


def test_no_gpu_path_with_the_real_nvml() -> None:
    if gpu_inventory().reason is None:
        pytest.skip("this host has an NVIDIA GPU")
    with Telemetry.for_pid(os.getpid(), interval_s=0.02) as t:
        result = run_window(t, 0.1)
    assert result.gpu_unavailable_reason is not None
    assert result.gpu_unavailable_reason.startswith("no NVIDIA GPU: ")
    assert result.gpus == () and not GPU_KEYS & result.metrics.keys()
    assert result.timeline is not None and result.timeline.gpus == ()
    assert result.metrics["server_rss_peak_mib"] > 10
    assert host_gpu_facts() == {"gpu_unavailable_reason": result.gpu_unavailable_reason}


def test_host_gpu_facts() -> None:
    gpus = [FakeGpu(nvlinks={0: "00000000:02:00.0", 1: "00000000:02:00.0"}),
            FakeGpu(nvlinks={0: "00000000:01:00.0", 3: "00000000:C3:00.0"})]
    facts = host_gpu_facts(FakeNvml(*gpus))
    assert facts["count"] == 2 and facts["driver_version"] == "550.54.15"
    assert facts["cuda_driver_version"] == "12.4"
    assert facts["gpus"][0] == {"index": 0, "name": "Fake GPU 0", "memory_total_mib": 81920,
                                "uuid": "GPU-0000", "pcie_gen": 5, "pcie_width": 16,
                                "pcie_max_gen": 5}  # max width NotSupported: absent
    assert facts["nvlink"] == [{"gpu": 0, "peer": 1, "links": 2},
                               {"gpu": 1, "peer": 0, "links": 1},
                               {"gpu": 1, "peer": "00000000:C3:00.0", "links": 1}]
    assert host_gpu_facts(FakeNvml(FakeGpu()))["nvlink"] == "no NVLink: GPUs joined by PCIe"


# --- timeline PNG ----------------------------------------------------------------------------


def test_timeline_png_needs_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = telemetry(FakeNvml(FakeGpu()), FakePsutil(FakeProcess(10)))
    result = run_window(t, 0.06)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    assert write_timeline_png(result, tmp_path / "t.png") is None


def test_timeline_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    t = telemetry(FakeNvml(FakeGpu(), FakeGpu(power_w=None)), FakePsutil(FakeProcess(10)))
    path = write_timeline_png(run_window(t, 0.1), tmp_path / "t.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"

"""Telemetry of one measured window: GPUs through NVML, the server's process tree through psutil.

:class:`Telemetry` is a ``loadgen.WindowObserver``.  ``window_started`` starts one sampling
thread (so GPU and CPU readings share one clock and one timeline); it reads at once, then every
``interval_s``, and once more when ``window_ended`` stops it, so nothing outside the window is
counted and even a short window has a first and a last reading.  ``result()`` then holds that
window's figures; the next window starts afresh.

```python
with Telemetry.for_served(served) as telemetry:
    telemetry.baseline()                      # idle readings, before the first window
    result = run_load(served, prompts, users=4, requests=64, observers=[telemetry])
    figures = telemetry.result(output_tokens=sum(r.output_tokens for r in result.run.records))
    figures.metrics["energy_j_per_token"]
```
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any, Protocol

from pytest_llmperf.observe.dcgm import DcgmSampler, GpuReadings, LocalAndRemoteGpus
from pytest_llmperf.observe.family_capture import Fetch
from pytest_llmperf.observe.gpu import host_gpu_facts, open_gpu_sampler
from pytest_llmperf.observe.process import (
    CGROUP_ROOT,
    ProcessSampler,
    PsutilLike,
    measured_pid,
)
from pytest_llmperf.results.metrics import GPU_METRICS, RESOURCES
from pytest_llmperf.results.resources import GpuUse, MeanPeak, Resources, Timeline

if TYPE_CHECKING:
    from types import TracebackType


class Served(Protocol):
    """What telemetry needs of a served model (``engines.base.ServedModel`` is one)."""

    @property
    def server_pid(self) -> int | None: ...  # None: in-process or attached

    @property
    def endpoint(self) -> object | None: ...  # None: an in-process engine

__all__ = ["GPU_METRICS", "METRICS", "Telemetry", "host_gpu_facts"]

# The SLO-able numbers in ``result().metrics`` (defined in metrics.RESOURCES), with units.
METRICS: dict[str, str] = {name: info.unit for name, info in RESOURCES.items()}


class Telemetry:
    """Samples ``process`` (and ``gpu`` when there is one) during each measured window."""

    def __init__(self, process: ProcessSampler, gpu: GpuReadings | str, *,
                 interval_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._process = process
        self._gpu = None if isinstance(gpu, str) else gpu
        self._gpu_reason = gpu if isinstance(gpu, str) else None
        self._interval = interval_s
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._times: list[float] = []
        self._error: str | None = None
        self._result: Resources | None = None
        self._baseline: Resources | None = None

    @classmethod
    def for_pid(cls, pid: int | None, *, scope: str = "launched server",
                interval_s: float = 0.5, nvml: Any = None, psutil_source: PsutilLike | None = None,
                cgroup_root: Path = CGROUP_ROOT, dcgm_urls: Sequence[str] = (),
                dcgm_fetch: Fetch | None = None) -> Telemetry:
        """Watch the tree under ``pid`` (None: system and GPUs only) and the GPUs of the
        dcgm-exporters at ``dcgm_urls`` (observe.dcgm); ``nvml``, ``psutil_source`` and
        ``dcgm_fetch`` stand in for ``pynvml``, ``psutil`` and HTTP in tests."""
        process = ProcessSampler(pid, scope=scope, source=psutil_source, cgroup_root=cgroup_root)
        gpu: GpuReadings | str = open_gpu_sampler(nvml, tree_pids=lambda: process.pids)
        if dcgm_urls:
            remote = DcgmSampler(dcgm_urls, fetch=dcgm_fetch)
            gpu = LocalAndRemoteGpus(None if isinstance(gpu, str) else gpu, remote)
        return cls(process, gpu, interval_s=interval_s)

    @classmethod
    def for_served(cls, served: Served, *, interval_s: float = 0.5,
                   nvml: Any = None, dcgm_urls: Sequence[str] = ()) -> Telemetry:
        """The launched server's tree; the test process for an in-process engine; none for
        an attached server (it is not ours: ``result()`` says so); and the GPUs of
        ``dcgm_urls`` (--llmperf-dcgm-url)."""
        pid, scope = measured_pid(served.server_pid, in_process=served.endpoint is None)
        return cls.for_pid(pid, scope=scope, interval_s=interval_s, nvml=nvml,
                           dcgm_urls=dcgm_urls)

    def follow(self, pid: int | None) -> None:
        """Watch ``pid``'s tree from now on: the server was started again."""
        self._process.pid = pid

    def close(self) -> None:
        """Stops any window still open and releases NVML."""
        if self._thread is not None:
            self.window_ended()
        if self._gpu is not None:
            self._gpu.close()
            self._gpu, self._gpu_reason = None, "no NVIDIA GPU: telemetry closed NVML"

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- the window ------------------------------------------------------------------------

    def window_started(self) -> None:
        if self._thread is not None:
            raise RuntimeError("window_started twice without window_ended")
        self._begin()
        self._result = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(self._clock(),),
                                        name="llmperf-telemetry", daemon=True)
        self._thread.start()

    def window_ended(self) -> None:
        if self._thread is None:
            raise RuntimeError("window_ended without window_started")
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._result = self._figures()

    def _begin(self) -> None:
        self._times, self._error = [], None
        self._process.start()
        if self._gpu is not None:
            self._gpu.start()  # reads the energy counters

    def _run(self, t0: float) -> None:
        next_t = 0.0
        try:
            while True:
                self._sample(self._clock() - t0)
                next_t += self._interval  # a fixed grid: slow readings do not drift it
                if self._stop.wait(max(0.0, next_t - (self._clock() - t0))):
                    break
            self._sample(self._clock() - t0)  # the window's last reading
        except Exception as exc:  # a bug in a reading must not kill the measured run
            self._error = f"telemetry sampling failed: {type(exc).__name__}: {exc}"

    def _sample(self, t: float) -> None:
        self._times.append(t)
        self._process.sample(t)  # first: it lists the tree the GPU reading filters on
        if self._gpu is not None:
            self._gpu.sample(t)

    def baseline(self, samples: int = 3, interval_s: float = 0.2) -> Resources:
        """Idle readings before the first window, kept apart as ``result().idle``."""
        if self._thread is not None:
            raise RuntimeError("baseline() during a measured window")
        self._begin()
        t0 = self._clock()
        for i in range(max(samples, 2)):  # two at least: CPU % needs an interval
            if i:
                time.sleep(interval_s)
            self._sample(self._clock() - t0)
        self._baseline = replace(self._figures(), timeline=None, idle=None,
                                 interval_s=interval_s)
        return self._baseline

    # --- figures ---------------------------------------------------------------------------

    def result(self, output_tokens: int | None = None) -> Resources:
        """The last window's figures; ``output_tokens`` gives energy per token."""
        if self._result is None:
            raise RuntimeError("no measured window has ended yet")
        return self._result.with_output_tokens(output_tokens or 0)

    def _figures(self) -> Resources:
        server, system = self._process.finish()
        gpus = self._gpu.finish() if self._gpu is not None else ()
        server_cpu, server_rss = self._process.timeline()
        return Resources(
            server=server, system=system, gpus=gpus,
            gpu_unavailable_reason=None if self._gpu is not None else self._gpu_reason,
            metrics=_metrics(server.cpu_pct, server.rss_mib, system.cpu_pct,
                             system.memory_used_mib, gpus),
            interval_s=self._interval, samples=len(self._times),
            duration_s=round(self._times[-1], 3) if self._times else 0.0,
            error=self._error or (self._gpu.problem()
                                  if isinstance(self._gpu, LocalAndRemoteGpus) else None),
            timeline=Timeline(tuple(round(t, 3) for t in self._times),
                              self._gpu.timeline() if self._gpu is not None else (),
                              server_cpu, server_rss),
            idle=self._baseline)


def _metrics(server_cpu: MeanPeak | None, server_rss: MeanPeak | None,
             system_cpu: MeanPeak | None, system_memory: MeanPeak | None,
             gpus: Sequence[GpuUse]) -> dict[str, float]:
    metrics: dict[str, float] = {}

    def put(name: str, value: float | None) -> None:
        if value is not None:
            metrics[name] = round(value, 3)

    put("gpu_memory_peak_mib", _over_gpus(gpus, "memory_used_mib", "peak", sum))
    put("gpu_process_memory_peak_mib", _over_gpus(gpus, "process_memory_mib", "peak", sum))
    put("gpu_util_mean", _over_gpus(gpus, "util_pct", "mean", fmean))
    put("gpu_power_mean_w", _over_gpus(gpus, "power_w", "mean", sum))
    put("energy_j", _over_gpus(gpus, "energy_j", None, sum))
    put("server_cpu_mean_pct", None if server_cpu is None else server_cpu.mean)
    put("server_cpu_peak_pct", None if server_cpu is None else server_cpu.peak)
    put("server_rss_mean_mib", None if server_rss is None else server_rss.mean)
    put("server_rss_peak_mib", None if server_rss is None else server_rss.peak)
    put("system_cpu_mean_pct", None if system_cpu is None else system_cpu.mean)
    put("system_memory_peak_mib", None if system_memory is None else system_memory.peak)
    return metrics


def _over_gpus(gpus: Sequence[GpuUse], name: str, stat: str | None,
               combine: Callable[[list[float]], float]) -> float | None:
    """``combine`` of one figure of every GPU; None when any GPU lacks it (a sum or mean over
    some of the GPUs would look like a figure for all of them)."""
    values = []
    for gpu in gpus:
        if stat is None:
            value = gpu.energy_j
        else:
            figure = gpu.figure(name)
            value = None if figure is None else (figure.peak if stat == "peak" else figure.mean)
        if value is None:
            return None
        values.append(float(value))
    return combine(values) if values else None

"""GPU readings of hosts the session does not run on, from NVIDIA DCGM exporters.

``--llmperf-dcgm-url URL`` (repeatable) names a dcgm-exporter's Prometheus page.
:class:`DcgmSampler` reads it at each telemetry sample, as the NVML sampler
(:mod:`pytest_llmperf.observe.gpu`) reads local GPUs, and gives the same figures per GPU, so
every GPU metric and SLO (``gpu_util_mean``, ``gpu_memory_peak_mib``, ``gpu_power_mean_w``,
``energy_j``) covers them.  A GPU is told apart by its host and index (labels ``Hostname`` and
``gpu``); its name says both: ``NVIDIA H100 80GB HBM3 (gpu 0 on node-a)``.

What is read (dcgm-exporter's default counters; units as DCGM gives them):

- ``DCGM_FI_DEV_GPU_UTIL`` (%) -> ``util_pct``
- ``DCGM_FI_DEV_FB_USED`` (MiB) -> ``memory_used_mib``; with ``DCGM_FI_DEV_FB_FREE`` (and
  ``DCGM_FI_DEV_FB_RESERVED`` where exported) the GPU's total memory
- ``DCGM_FI_DEV_POWER_USAGE`` (W) -> ``power_w``
- ``DCGM_FI_DEV_GPU_TEMP`` (C) -> ``temperature_c``
- ``DCGM_FI_DEV_SM_CLOCK`` (MHz) -> ``sm_clock_mhz``
- ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ since boot) -> the window's ``energy_j``, as
  the difference of the first and last reading; without it, power integrated over the samples.

The server's own share of GPU memory (``process_memory_mib``) is not in DCGM's default page:
left absent.  A failed read is counted and said in the window's notes, never raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pytest_llmperf.observe.exposition import Sample, parse_exposition
from pytest_llmperf.observe.family_capture import Fetch, fetch_text, lines_of
from pytest_llmperf.observe.gpu_samples import integrated_energy_j, timelines
from pytest_llmperf.observe.process import mean_peak
from pytest_llmperf.results.resources import GPU_FIGURES, GpuTimeline, GpuUse, MeanPeak

__all__ = ["DCGM_FIELDS", "DcgmSampler", "GpuReadings", "LocalAndRemoteGpus"]

# DCGM field -> our per-sample figure.
DCGM_FIELDS = {
    "DCGM_FI_DEV_GPU_UTIL": "util_pct",
    "DCGM_FI_DEV_FB_USED": "memory_used_mib",
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "DCGM_FI_DEV_GPU_TEMP": "temperature_c",
    "DCGM_FI_DEV_SM_CLOCK": "sm_clock_mhz",
}
_FREE, _RESERVED = "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED"
_ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
_READ = (*DCGM_FIELDS, _FREE, _RESERVED, _ENERGY)

GpuKey = tuple[str, str]  # (url, host:gpu): one GPU of one exporter


@dataclass
class _Gpu:
    name: str
    uuid: str | None
    index: int
    total_mib: float | None = None
    samples: dict[str, list[float | None]] = field(default_factory=dict)
    energy_mj: list[float] = field(default_factory=list)


class DcgmSampler:
    """The GPUs of one or more dcgm-exporter pages, driven like the NVML sampler by
    :class:`pytest_llmperf.observe.telemetry.Telemetry`: ``start``, ``sample(t)``,
    ``finish``.  ``fetch`` (url, timeout_s) -> text is for tests."""

    def __init__(self, urls: Sequence[str], *, timeout_s: float = 2.0,
                 fetch: Fetch | None = None) -> None:
        self.urls = tuple(urls)
        self.timeout_s = timeout_s
        self.failed_reads = 0
        self._fetch: Callable[[str, float], str] = fetch or fetch_text
        self._gpus: dict[GpuKey, _Gpu] = {}
        self._t: list[float] = []

    def close(self) -> None:
        """Nothing to release (the NVML sampler's counterpart shuts NVML down)."""

    def start(self) -> None:
        self._t, self.failed_reads = [], 0
        for gpu in self._gpus.values():
            gpu.samples = {name: [] for name in GPU_FIGURES}
            gpu.energy_mj = []

    def sample(self, t: float) -> None:
        index = len(self._t)
        self._t.append(t)
        for url in self.urls:
            try:
                text = self._fetch(url, self.timeout_s)
            except Exception:  # counted: the other samples still make the window's figures
                self.failed_reads += 1
                continue
            self._take(url, parse_exposition(lines_of(text, _READ)).samples, index)
        for gpu in self._gpus.values():  # a GPU no page answered for: a gap, not a zero
            for values in gpu.samples.values():
                values.extend([None] * (index + 1 - len(values)))

    def _take(self, url: str, samples: Sequence[Sample], index: int) -> None:
        readings: dict[GpuKey, dict[str, float]] = {}
        for sample in samples:
            if sample.family not in _READ or math.isnan(sample.value):
                continue
            key = (url, f"{sample.labels.get('Hostname', '')}:{sample.labels.get('gpu', '')}")
            if key not in self._gpus:
                self._gpus[key] = self._new_gpu(sample, index)
            readings.setdefault(key, {})[sample.family] = sample.value
        for key, values in readings.items():
            gpu = self._gpus[key]
            for dcgm, figure in DCGM_FIELDS.items():
                gpu.samples[figure].append(values.get(dcgm))
            if _ENERGY in values:
                gpu.energy_mj.append(values[_ENERGY])
            if "DCGM_FI_DEV_FB_USED" in values and _FREE in values:
                gpu.total_mib = (values["DCGM_FI_DEV_FB_USED"] + values[_FREE]
                                 + values.get(_RESERVED, 0.0))

    def _new_gpu(self, sample: Sample, index: int) -> _Gpu:
        labels = sample.labels
        where = f"gpu {labels.get('gpu', '?')}" + (f" on {labels['Hostname']}"
                                                   if labels.get("Hostname") else "")
        number = labels.get("gpu", "")
        return _Gpu(f"{labels.get('modelName', 'GPU')} ({where})", labels.get("UUID"),
                    int(number) if number.isdigit() else len(self._gpus),
                    samples={name: [None] * index for name in GPU_FIGURES})

    def finish(self) -> tuple[GpuUse, ...]:
        """Per GPU: mean and peak of each figure read, and the window's energy."""
        found = []
        for gpu in self._gpus.values():
            def figure(name: str, gpu: _Gpu = gpu) -> MeanPeak | None:
                return mean_peak(gpu.samples.get(name, []))

            joules, source = self._energy(gpu)
            found.append(GpuUse(
                gpu.index, gpu.name, gpu.uuid, gpu.total_mib,
                util_pct=figure("util_pct"), memory_used_mib=figure("memory_used_mib"),
                power_w=figure("power_w"), temperature_c=figure("temperature_c"),
                sm_clock_mhz=figure("sm_clock_mhz"), energy_j=joules, energy_source=source))
        return tuple(found)

    def _energy(self, gpu: _Gpu) -> tuple[float | None, str | None]:
        counter = gpu.energy_mj
        if len(counter) >= 2 and counter[-1] >= counter[0]:
            return round((counter[-1] - counter[0]) / 1000, 3), "DCGM energy counter"
        joules = integrated_energy_j(self._t, gpu.samples.get("power_w", []))
        return (joules, "integrated power samples") if joules is not None else (None, None)

    def timeline(self) -> tuple[GpuTimeline, ...]:
        """Per GPU, util/memory/power at each sample, one decimal: enough for a chart."""
        return timelines(gpu.samples for gpu in self._gpus.values())


class LocalAndRemoteGpus:
    """The local GPUs (NVML; None: none here) and the DCGM exporters' GPUs as one sampler."""

    def __init__(self, local: GpuReadings | None, remote: DcgmSampler) -> None:
        self.samplers: list[GpuReadings] = [s for s in (local, remote) if s is not None]

    def close(self) -> None:
        for sampler in self.samplers:
            sampler.close()

    def start(self) -> None:
        for sampler in self.samplers:
            sampler.start()

    def sample(self, t: float) -> None:
        for sampler in self.samplers:
            sampler.sample(t)

    def finish(self) -> tuple[GpuUse, ...]:
        return tuple(gpu for sampler in self.samplers for gpu in sampler.finish())

    def problem(self) -> str | None:
        """Why some remote readings are missing (None: every read worked)."""
        failed = sum(s.failed_reads for s in self.samplers if isinstance(s, DcgmSampler))
        return f"{failed} read(s) of a DCGM exporter failed" if failed else None

    def timeline(self) -> tuple[GpuTimeline, ...]:
        return tuple(gpu for sampler in self.samplers for gpu in sampler.timeline())


class GpuReadings(Protocol):
    """What telemetry drives: the NVML sampler, a DCGM sampler, or both."""

    def close(self) -> None: ...

    def start(self) -> None: ...

    def sample(self, t: float) -> None: ...

    def finish(self) -> tuple[GpuUse, ...]: ...

    def timeline(self) -> tuple[GpuTimeline, ...]: ...

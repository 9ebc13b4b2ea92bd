"""What the NVML and DCGM samplers do alike with a GPU's samples: the window's energy from
power readings where no energy counter answered, and the timeline a chart draws."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from pytest_llmperf.results.resources import GpuTimeline

__all__ = ["integrated_energy_j", "timelines"]

Samples = Mapping[str, Sequence[float | None]]


def integrated_energy_j(times: Sequence[float], powers: Sequence[float | None]) -> float | None:
    """Joules from power readings (W) at ``times`` (s), by trapezoids over the readings that
    were taken; None with fewer than two."""
    points = [(t, p) for t, p in zip(times, powers, strict=False) if p is not None]
    if len(points) < 2:
        return None
    return round(sum((t1 - t0) * (p0 + p1) / 2
                     for (t0, p0), (t1, p1) in itertools.pairwise(points)), 3)


def timelines(gpus: Iterable[Samples]) -> tuple[GpuTimeline, ...]:
    """Per GPU, util/memory/power at each sample, one decimal: enough for a chart."""
    return tuple(GpuTimeline(*(tuple(None if v is None else round(v, 1)
                                     for v in samples.get(name, []))
                               for name in ("util_pct", "memory_used_mib", "power_w")))
                 for samples in gpus)

"""Load shapes from the settings, and the arrival schedule of an open loop.

Open-loop arrivals come from one schedule of absolute times fixed before the first request
(:func:`arrival_offsets`, seeded), so a slow client cannot lower the rate it offers by sending
late: lateness shows as slip, it never stretches the schedule.  The shape itself
(:class:`~pytest_llmperf.results.load_shape.LoadShape`) is part of every result.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.rate_stages import time_at_mass

if TYPE_CHECKING:
    import numpy as np

__all__ = ["arrival_offsets", "staged_arrivals"]


def arrival_offsets(shape: LoadShape, count: int) -> list[float]:
    """Seconds from the first arrival to each of ``count`` arrivals of an open-loop shape.

    The first arrival is at 0; the gaps after it are drawn from the shape's distribution with
    mean ``1 / rate`` (numpy's seeded generator: the same seed gives the same schedule).  A
    replayed trace gives its own offsets, no more than it holds.
    """
    import numpy as np  # here, not at import: the plugin's entry imports this module

    if shape.rate is None:
        raise ValueError("a closed-loop shape has no arrival schedule")
    if count < 1:
        return []
    if shape.arrivals == "trace":  # the recording's own times: at most its arrivals
        return list(shape.offsets[:count])
    if shape.stages:
        return staged_arrivals(shape)[0][:count]
    if math.isinf(shape.rate):
        return [0.0] * count
    gaps = _gaps(shape, np.random.default_rng(shape.seed), count - 1) / shape.rate
    return [0.0, *np.cumsum(gaps).tolist()]


def staged_arrivals(shape: LoadShape) -> tuple[list[float], list[int]]:
    """A staged shape's arrivals (seconds from the first stage's start, the first at 0) and
    the stage each falls in: the shape's gaps drawn in expected arrivals (mean 1), mapped to
    seconds through the stages' cumulative rate (results.rate_stages)."""
    import numpy as np

    total = sum(stage.mass for stage in shape.stages)
    rng = np.random.default_rng(shape.seed)
    masses = [0.0]
    while masses[-1] < total:  # in chunks: a few draws past the end at most
        chunk = np.cumsum(_gaps(shape, rng, int(total - masses[-1]) + 16)) + masses[-1]
        masses.extend(chunk.tolist())
    times = time_at_mass(shape.stages, [m for m in masses if m < total])
    return [t for t, _ in times], [stage for _, stage in times]


def _gaps(shape: LoadShape, rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` gaps of mean 1 of the shape's arrivals (constant, exponential, gamma)."""
    import numpy as np

    if shape.arrivals == "constant":
        return np.ones(count)
    k = 1.0 if shape.arrivals == "poisson" else shape.burstiness
    # Gamma(k, theta) with k * theta = 1; k = 1 is the exponential.
    return rng.gamma(shape=k, scale=1.0 / k, size=count)

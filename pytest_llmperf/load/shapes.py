"""Load shapes from the settings, and the arrival schedule of an open loop.

Open-loop arrivals come from one schedule of absolute times fixed before the first request
(:func:`arrival_offsets`, seeded), so a slow client cannot lower the rate it offers by sending
late: lateness shows as slip, it never stretches the schedule.  The shape itself
(:class:`~pytest_llmperf.results.load_shape.LoadShape`) is part of every result.
"""

from __future__ import annotations

import math

from pytest_llmperf.results.load_shape import LoadShape

__all__ = ["arrival_offsets"]



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
    if math.isinf(shape.rate):
        return [0.0] * count
    mean_gap = 1.0 / shape.rate
    if shape.arrivals == "constant":
        gaps = np.full(count - 1, mean_gap)
    else:
        rng = np.random.default_rng(shape.seed)
        k = 1.0 if shape.arrivals == "poisson" else shape.burstiness
        # Gamma(k, theta) with k * theta = mean gap; k = 1 is the exponential.
        gaps = rng.gamma(shape=k, scale=mean_gap / k, size=count - 1)
    return [0.0, *np.cumsum(gaps).tolist()]

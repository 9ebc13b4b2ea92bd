"""The statistics a metric can be summarised by: mean, median, min, max, stdev and ``pNN``.

Percentiles interpolate linearly between closest ranks (``numpy.percentile``'s default); stdev
is the population's (numpy's default).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

__all__ = ["parse_statistic", "percentile", "quantile_of", "statistic"]


_PERCENTILE = re.compile(r"p(\d{1,3}(?:\.\d+)?)")


def quantile_of(statistic: str | None) -> float | None:
    """The quantile a statistic names (median 0.5, p95 0.95); None for mean, max, ..."""
    if statistic == "median":
        return 0.5
    if statistic is None or not statistic.startswith("p"):
        return None
    try:
        value = float(statistic[1:]) / 100.0
    except ValueError:
        return None
    return value if 0.0 < value < 1.0 else None


def parse_statistic(name: str) -> Callable[[Sequence[float]], float] | None:
    """The function computing statistic ``name``, or None when the name is not a statistic."""
    if name in _NAMED_STATISTICS:
        return _NAMED_STATISTICS[name]
    match = _PERCENTILE.fullmatch(name)
    if match is None:
        return None
    q = float(match.group(1))
    if not 0.0 <= q <= 100.0:
        return None
    return lambda values: percentile(values, q)


def statistic(values: Sequence[float], name: str) -> float:
    func = parse_statistic(name)
    if func is None:
        raise ValueError(f"unknown statistic {name!r}")
    return func(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def _stdev(values: Sequence[float]) -> float:
    mean = _mean(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


_NAMED_STATISTICS: Mapping[str, Callable[[Sequence[float]], float]] = MappingProxyType(
    {
        "mean": _mean,
        "median": lambda values: percentile(values, 50.0),
        "min": lambda values: float(min(values)),
        "max": lambda values: float(max(values)),
        "stdev": _stdev,
    }
)

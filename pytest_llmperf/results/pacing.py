"""Pacing of an open-loop window: the rate offered, the rate sent, and whether the queue grew.

Definitions (docs/metrics.md), over the measured requests of an open-loop window with a
finite rate (absent in a closed loop, where nothing is scheduled):

- ``offered_rate``: (requests - 1) / (last scheduled time - first scheduled time), req/s: the
  rate of the schedule as drawn (a Poisson schedule of 64 arrivals differs from its nominal
  rate by about 1/sqrt(64) = 12 %).
- ``send_rate``: the same over the times the requests were really sent.
- ``queue_growth``: the least-squares slope of each completed request's time from its scheduled
  time to its last token against its scheduled time, in seconds per second.  About 0 when
  the server keeps up; a server that sustains a rate mu against an offered lambda > mu starts
  request i at i / mu instead of i / lambda, which makes it lambda / mu - 1.  The last token,
  not the first: a server that queues shows it in TTFT, one that slows every stream as more
  arrive (no queue, no cap) only in how long each answer takes, and both in E2EL.  Not
  defined for a burst, a schedule that spans less time than its quickest request took (a rate
  of 1e9 req/s): its requests overlap, and a slope over nanoseconds says nothing of a queue.

A window is *overloaded* (:func:`overload`) when the queue grew through it (growth above
``GROWTH_LIMIT`` and more than 3 standard errors from 0) and it completed under
``SUSTAINED_SHARE`` of the offered rate.  Its latencies are then mostly time spent queueing,
set by the window's length rather than by the server, and the run says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pytest_llmperf.results.records import LoadRun, RequestRecord

__all__ = ["GROWTH_LIMIT", "SUSTAINED_SHARE", "overload", "pacing_scalars"]

GROWTH_LIMIT = 0.1  # s of extra wait per s of window: the server sustains < 91 % of the rate
SUSTAINED_SHARE = 0.9
_MIN_POINTS = 8  # fewer completed requests say nothing about a trend
_NS = 1e9


def _rate(times_ns: Sequence[int]) -> float | None:
    if len(times_ns) < 2:
        return None
    span = max(times_ns) - min(times_ns)
    return (len(times_ns) - 1) / (span / _NS) if span > 0 else None


def _slope(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares slope and its standard error."""
    n = len(xs)
    if n < _MIN_POINTS:
        return None
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residual = math.fsum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, math.sqrt(residual / (n - 2) / sxx)


def _growth(records: Sequence[RequestRecord]) -> tuple[float, float] | None:
    done = [r for r in records if r.ok and r.scheduled_ns is not None]
    if not done:
        return None
    first = min(r.scheduled_ns or 0 for r in done)
    xs = [((r.scheduled_ns or 0) - first) / _NS for r in done]
    ys = [(r.last_byte_ns - (r.scheduled_ns or 0)) / _NS for r in done]
    if max(xs) < min(ys):  # a burst (module docstring)
        return None
    return _slope(xs, ys)


def pacing_scalars(run: LoadRun) -> dict[str, float]:
    """``offered_rate``, ``send_rate`` and ``queue_growth`` of an open-loop window (those it
    can define; none for a closed loop)."""
    scheduled = [r.scheduled_ns for r in run.records if r.scheduled_ns is not None]
    if not scheduled:
        return {}
    found: dict[str, float] = {}
    offered = _rate(scheduled)
    if offered is not None:
        found["offered_rate"] = offered
        sent = _rate([r.send_ns for r in run.records if r.scheduled_ns is not None])
        if sent is not None:
            found["send_rate"] = sent
        growth = _growth(run.records)
        if growth is not None:
            found["queue_growth"] = growth[0]
    return found


def overload(run: LoadRun, scalars: Mapping[str, float]) -> str | None:
    """Why this open-loop window's latencies are queueing, not service; None when it is not
    overloaded (or not an open loop)."""
    offered = scalars.get("offered_rate")
    sustained = scalars.get("request_throughput")
    growth = _growth(run.records)
    if offered is None or sustained is None or growth is None:
        return None
    slope, error = growth
    if slope <= GROWTH_LIMIT or slope <= 3 * error or sustained >= SUSTAINED_SHARE * offered:
        return None
    return (f"overloaded: offered {offered:.3g} req/s, sustained {sustained:.3g} req/s; the "
            f"time from each request's scheduled time to its last token grew by {slope:.2f} s "
            f"every second of the window, so the queue grew for the whole window and these "
            f"latencies are mostly queueing. Offer a lower rate (llmperf_capacity finds the "
            f"highest one the SLOs allow)")

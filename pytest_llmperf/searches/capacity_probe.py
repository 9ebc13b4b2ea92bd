"""One probe of a capacity search: how many requests it measures, how long it is expected to
take, and its outcome once its window has been judged."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pytest_llmperf.results.capacity import ProbeOutcome
from pytest_llmperf.results.goodput import goodput
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.slo import Verdict
from pytest_llmperf.results.thresholds import Check
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.searches.capacity_settle import UNDECIDABLE
from pytest_llmperf.searches.probe_rules import headroom

__all__ = ["probe_estimate", "probe_outcome", "probe_size"]


def probe_size(shape: LoadShape, requests: int, warmup: int,
               probe_s: float = 10.0) -> tuple[int, int]:
    """Measured and warm-up requests of a probe at ``shape``.

    A closed loop measures ``requests``, at least 2 per user, after one warm-up request per
    user (the server is warm from the probe before; each user's first answer brings it to the
    new load).  An open loop measures at least ``probe_s`` seconds of arrivals (a queue needs
    time to show), ``requests`` when that is longer, up to twice ``probe_s``, and never fewer
    than 8 (what a trend needs), after about ``probe_s`` / 5 seconds of warm-up arrivals.
    """
    if shape.rate is None:
        return max(requests, 2 * (shape.users or 1)), (shape.users or 1) if warmup else 0
    if math.isinf(shape.rate):
        return requests, warmup
    least, most = math.ceil(shape.rate * probe_s), math.ceil(shape.rate * 2 * probe_s)
    return (max(8, min(max(requests, least), most)),
            min(warmup, max(1, math.ceil(shape.rate * probe_s / 5))))


def probe_estimate(base: LoadShape, requests: int, warmup: int, probe_s: float
                   ) -> Callable[[float, Sequence[ProbeOutcome]], float]:
    """How long a probe will take: a closed loop's as long as the longest so far; an open
    loop's its arrivals' span plus the longest tail (last answer after last arrival) so far."""

    def span(load: float) -> float:
        planned, warm = probe_size(base.with_load(load), requests, warmup, probe_s)
        return (planned + warm) / load if math.isfinite(load) else 0.0

    def estimate(load: float, probes: Sequence[ProbeOutcome]) -> float:
        if not base.is_open:
            return max(p.duration_s for p in probes)
        return span(load) + max(max(p.duration_s - span(p.load), 0.0) for p in probes)

    return estimate


def probe_outcome(load: float, window: WindowResult, verdicts: Sequence[Verdict],
                  checks: Sequence[Check], duration_s: float, pooled: int = 0) -> ProbeOutcome:
    """The probe at ``load``: it passed when every SLO held (``verdicts``: of its window, or
    with ``pooled`` earlier requests at the load: of them all), the window was not overloaded
    and it ran to its end; what broke, in words.  Requests the client itself could not send
    (``client_limit``) make it a probe of the client, which ends the search."""
    broke = [v.describe() for v in verdicts if not v.passed]
    limited = window.errors.get("client_limit")
    client_limit = None
    if limited is not None:
        client_limit = (f"{limited.count} of {window.requests} requests could not be sent, the "
                        f"client's machine ran out: {limited.example}")
        broke.insert(0, f"client_limit: {client_limit}")
    if window.overload:
        broke.append(window.overload)
    # A settling probe stopped because its look could no longer decide a pass has not failed:
    # the search names its load undecided (searches.capacity_settle).
    undecidable = UNDECIDABLE in (window.run.stopped_early or "")
    if window.run.stopped_early and not broke and not undecidable:
        broke.append(f"stopped early: {window.run.stopped_early}")
    return ProbeOutcome(load, not broke, tuple(broke), headroom(verdicts),
                        goodput(window.run, checks), duration_s, window.run.stopped_early,
                        LoadPoint.of(window), window, client_limit, pooled=pooled)

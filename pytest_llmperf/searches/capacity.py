"""Capacity search: the highest load (users, or requests per second) at which every SLO of a
test holds, found with few probes and said with how sure it is.

1. Bracket: probe the start load, then double it while probes pass (halve it while they fail),
   up to the maximum load.
2. Narrow: bisect between the highest passing and the lowest failing load (users: to one user;
   rates: geometrically, until they are within ``resolution``, 10 % by default).
3. Confirm: probe both ends of the boundary once more.  Measurements are noisy (vLLM removed a
   bisection search for being fragile); a repeat shows whether the boundary holds.
4. Decide by a monotone fit: the capacity is the highest probed load at which every probe
   passed *and* every probe at a lower load passed too.  A load that passed once and failed
   once is below no capacity, and the result says so ("9 users passed 1 of 2").

Every probe is its own measured window with its own warm-up (``probe(load)``); one that has
clearly failed stops early (searches.probe_rules.clearly_failed).  The search never starts a probe
it expects to overrun ``budget_s`` (its estimate: the longest probe so far, scaled by
1/load for an open loop, whose window length is requests / rate); the first probe always
runs.  A search cut short by the budget or the maximum says the boundary lies beyond.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome

__all__ = ["search_capacity"]


def _gap_closed(low: float, high: float, integer: bool, resolution: float) -> bool:
    return high - low <= 1 if integer else high / low <= 1 + resolution


def _between(low: float, high: float, integer: bool) -> float:
    """The next load to probe: the whole-number middle, or the geometric middle of two rates
    to 3 significant digits (a rate of 1.41 req/s, not 1.41421)."""
    if integer:
        return float(math.floor((low + high) / 2))
    middle = float(f"{math.sqrt(low * high):.3g}")
    return middle if low < middle < high else math.sqrt(low * high)


def search_capacity(
    probe: Callable[[float], ProbeOutcome],
    *,
    dimension: str,
    start: float,
    maximum: float,
    budget_s: float,
    minimum: float | None = None,
    resolution: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    estimate: Callable[[float, Sequence[ProbeOutcome]], float] | None = None,
) -> CapacityResult:
    """Search ``dimension`` ("users": whole numbers from 1; "rate": req/s) between ``minimum``
    (default 1 user, or start / 64) and ``maximum``.  ``estimate(load, probes)`` is how long
    the probe at ``load`` will take (default: the longest probe so far, scaled by 1/load for
    a rate)."""
    integer = dimension == "users"
    low_limit = minimum if minimum is not None else (1.0 if integer else start / 64)
    began = clock()
    probes: list[ProbeOutcome] = []

    def longest(load: float, done: Sequence[ProbeOutcome]) -> float:
        slowest = max(done, key=lambda p: p.duration_s)
        return slowest.duration_s * (1 if integer else slowest.load / load)

    stop_reason = "boundary found"

    def run(load: float) -> ProbeOutcome | None:
        nonlocal stop_reason
        if probes:
            expected = (estimate or longest)(load, probes)
            if clock() - began + expected > budget_s:
                stop_reason = "budget"
                return None
        outcome = probe(load)
        probes.append(outcome)
        if outcome.client_limit:  # no verdict on the server: nothing to search on from here
            stop_reason = "client limit"
            return None
        return outcome

    low: float | None = None
    high: float | None = None
    load = min(max(start, low_limit), maximum)
    while (outcome := run(load)) is not None:
        if outcome.passed:
            low = load
            if high is not None or load >= maximum:
                stop_reason = "boundary found" if high is not None else "maximum load"
                break
            load = min(load * 2, maximum)
        else:
            high = load
            if low is not None:
                break
            if load <= low_limit:
                stop_reason = "minimum load failed"
                break
            load = max(math.floor(load / 2) if integer else load / 2, low_limit)
    while (stop_reason == "boundary found" and low is not None and high is not None
           and not _gap_closed(low, high, integer, resolution)):
        middle = _between(low, high, integer)
        outcome = run(middle)
        if outcome is None:
            break
        if outcome.passed:
            low = middle
        else:
            high = middle
    if stop_reason == "boundary found":
        for end in (low, high):
            if end is not None and run(end) is None:
                break
    capacity, first_failing = _monotone_fit(probes)
    return CapacityResult(dimension, capacity, first_failing, tuple(probes), stop_reason,
                          clock() - began, budget_s)


def _monotone_fit(probes: list[ProbeOutcome]) -> tuple[float | None, float | None]:
    """The highest load with every probe at it and below it passing, and the lowest load
    above that with a failing probe."""
    probes = [p for p in probes if not p.client_limit]  # they measured the client
    capacity = None
    for load in sorted({p.load for p in probes}):
        if all(p.passed for p in probes if p.load <= load):
            capacity = load
        else:
            break
    failing = [p.load for p in probes if not p.passed and (capacity is None or p.load > capacity)]
    return capacity, min(failing) if failing else None

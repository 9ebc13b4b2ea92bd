"""Capacity search: the highest load (users, or requests per second) at which every SLO of a
test holds, found with few probes and said with how sure it is.

1. Bracket: probe the start load, then double it while probes pass (halve it while they fail),
   up to the maximum load.
2. Narrow: bisect between the highest passing and the lowest failing load (users: to one user;
   rates: geometrically, until they are within ``resolution``, 10 % by default).
3. Confirm: probe both ends of the boundary once more.  Measurements are noisy (vLLM removed a
   bisection search for being fragile); a repeat shows whether the boundary holds.  When the
   confirmation moves the boundary to a load probed only once, that load is probed again
   (at most ``RECONFIRM`` rounds).
4. Decide by a monotone fit: the capacity is the highest probed load at which every probe
   passed *and* every probe at a lower load passed too.  A load that passed once and failed
   once is below no capacity, and the result says so ("9 users passed 1 of 2"); an end of the
   boundary that rests on one probe says that too ("rests on one probe at 3 users").

A probe that failed in a window marked ``disturbed`` (other processes took the machine's
CPU), or any probe in a window marked ``client-bound`` (the client itself was the limit;
observe.health), says nothing sure of the server: it is not counted as a pass or a fail but
kept as discarded, with why, and the load is measured again, up to ``REMEASURE`` times (a
disturbed pass counts: see :func:`unsound`).  When no undisturbed measurement can be had (the
tries or the budget run out), the search stops there and its result says it was disturbed
(``CapacityResult.disturbed``): a limit or a baseline held to it is inconclusive.

Every probe is its own measured window with its own warm-up (``probe(load)``); one that has
clearly failed stops early (searches.probe_rules.clearly_failed).  The search never starts a probe
it expects to overrun ``budget_s`` (its estimate: the longest probe so far, scaled by
1/load for an open loop, whose window length is requests / rate); the first probe always
runs.  A search cut short by the budget or the maximum says the boundary lies beyond.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome

__all__ = ["RECONFIRM", "REMEASURE", "search_capacity"]

REMEASURE = 2  # a disturbed or client-bound probe is measured again at most this many times
RECONFIRM = 2  # rounds of probing again a boundary end that rests on one probe, after confirming


def unsound(outcome: ProbeOutcome) -> str | None:
    """Why a probe's window cannot judge the server: its ``disturbed`` and ``client-bound``
    marks with the limits crossed ("disturbed: other_cpu_pct 76 > 25"); None when sound.

    A probe that passed on a disturbed machine is sound: other work can only have slowed the
    server, so it held under harder conditions than asked (counting it keeps a search usable
    on a busy host, where every window reads disturbed).  A client-bound one is not, passed or
    failed: a client that cannot keep up offers less load than it says."""
    if outcome.window is None:
        return None
    marks = dict(outcome.window.validity_marks)
    if outcome.passed:
        marks.pop("disturbed", None)
    return "; ".join(f"{mark}: {', '.join(crossed)}" for mark, crossed in marks.items()) or None


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

    def fits(load: float) -> bool:
        return not probes or clock() - began + (estimate or longest)(load, probes) <= budget_s

    def run(load: float) -> ProbeOutcome | None:
        """The probe at ``load``, measured again while disturbed; None: the search stops."""
        nonlocal stop_reason
        for tries in range(REMEASURE + 1):
            if not fits(load):
                stop_reason = "budget"
                return None
            outcome = probe(load)
            if outcome.client_limit:  # no verdict on the server: nothing to search on from here
                probes.append(outcome)
                stop_reason = "client limit"
                return None
            reason = unsound(outcome)
            if reason is None:
                probes.append(outcome)
                return outcome
            probes.append(dataclasses.replace(outcome, discarded=reason))
            if tries == REMEASURE:
                then = f"not measured again: marked {tries + 1} times in a row"
                stop_reason = "disturbed"
            elif not fits(load):
                then = "not measured again: the budget ran out"
            else:
                then = "measured again"
            probes[-1] = dataclasses.replace(outcome, discarded=f"{reason}; {then}")
        return None

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
    for _ in range(RECONFIRM):
        if stop_reason != "boundary found":
            break
        single = [end for end in _monotone_fit(probes) if end is not None
                  and sum(p.counted and p.load == end for p in probes) == 1]
        if not single or any(run(end) is None for end in single):
            break
    capacity, first_failing = _monotone_fit(probes)
    return CapacityResult(dimension, capacity, first_failing, tuple(probes), stop_reason,
                          clock() - began, budget_s)


def _monotone_fit(probes: list[ProbeOutcome]) -> tuple[float | None, float | None]:
    """The highest load with every probe at it and below it passing, and the lowest load
    above that with a failing probe."""
    # Those that measured the client, or a disturbed machine, say nothing of the server.
    probes = [p for p in probes if not p.client_limit and p.counted]
    capacity = None
    for load in sorted({p.load for p in probes}):
        if all(p.passed for p in probes if p.load <= load):
            capacity = load
        else:
            break
    failing = [p.load for p in probes if not p.passed and (capacity is None or p.load > capacity)]
    return capacity, min(failing) if failing else None

"""Capacity search: the highest load (users, or requests per second) at which every SLO of a
test holds, found with few probes and said with how sure it is.

1. Bracket: probe the start load, then double it while probes pass (halve it while they fail),
   up to the maximum load.
2. Narrow: bisect between the highest passing and the lowest failing load (users: to one user;
   rates: geometrically, until they are within ``resolution``, 10 % by default).
3. Confirm: probe both ends of the boundary once more (with a settler, the failing end only:
   settling measures the capacity end).  Measurements are noisy (vLLM removed a
   bisection search for being fragile); a repeat shows whether the boundary holds.  When the
   confirmation moves the boundary to a load probed only once, that load is probed again
   (at most ``RECONFIRM`` rounds).
4. Settle (with a ``settler``, as a bench's search has): the capacity load's probes are pooled
   and it is measured again until its percentile SLOs are decided at the stated confidence
   (searches.capacity_settle); a pooled probe that fails lowers the capacity, and the load
   below is settled in turn, after the loads between them that were never probed are bisected.
   What was decided, or why not, is the result's ``settled``.
5. Decide by a monotone fit: the capacity is the highest probed load at which every probe
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
from typing import Protocol

from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.searches.capacity_settle import UNDECIDABLE, Settling

__all__ = ["RECONFIRM", "REMEASURE", "SETTLE_ROUNDS", "Settler", "search_capacity"]

REMEASURE = 2  # a disturbed or client-bound probe is measured again at most this many times
RECONFIRM = 2  # rounds of probing again a boundary end that rests on one probe, after confirming
SETTLE_ROUNDS = 4  # pooled probes at most, to settle the capacity load (or the loads below it)


class Settler(Protocol):
    """Settles the capacity load (searches.capacity_settle.PooledSettler)."""

    def state(self, at: Sequence[ProbeOutcome]) -> Settling: ...

    def seconds(self, more: int, at: Sequence[ProbeOutcome]) -> float: ...

    def probe(self, load: float, more: int, at: Sequence[ProbeOutcome]) -> ProbeOutcome: ...


def unsound(outcome: ProbeOutcome) -> str | None:
    """Why a probe's window cannot judge the server: its ``disturbed`` and ``client-bound``
    marks with the limits crossed ("disturbed: other_cpu_pct 76 > 25"); None when sound.

    A probe that passed on a disturbed machine is sound: other work can only have slowed the
    server, so it held under harder conditions than asked (counting it keeps a search usable
    on a busy host, where every window reads disturbed).  A client-bound one is not, as a
    client that cannot keep up offers less load than it says, with one exception, the mirror
    of the disturbed pass: a probe that failed when the only limit the client crossed was its
    open loop's sending late (``send_late_ms``).  Late arrivals are less load than asked, so
    the server failed under easier conditions than asked; the client's reading of the tokens
    was on time (its loop lag and CPU within their limits), so the latencies are the server's.
    (An overloaded open loop on a small machine sends a little late: 16 ms against 300 ms
    between arrivals, while its TTFT median misses by seconds.)"""
    if outcome.window is None:
        return None
    marks = dict(outcome.window.validity_marks)
    # A settling probe stopped because it could no longer be shown to hold has not passed.
    undecidable = UNDECIDABLE in (outcome.stopped_early or "")
    if outcome.passed and not undecidable:
        marks.pop("disturbed", None)
    elif all(crossed.startswith("send_late_ms") for crossed in marks.get("client-bound", ("",))):
        marks.pop("client-bound", None)
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
    settler: Settler | None = None,
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

    def fits(load: float, seconds: float | None = None) -> bool:
        if not probes:
            return True
        expected = (estimate or longest)(load, probes) if seconds is None else seconds
        return clock() - began + expected <= budget_s

    def run(load: float, settle: int = 0) -> ProbeOutcome | None:
        """The probe at ``load`` (with ``settle``: that many requests more, pooled with the
        load's probes), measured again while disturbed; None: the search stops."""
        nonlocal stop_reason
        for tries in range(REMEASURE + 1):
            at = [p for p in probes if p.counted and p.load == load]
            seconds = settler.seconds(settle, at) if settle and settler else None
            if not fits(load, seconds):
                stop_reason = "budget"
                return None
            outcome = settler.probe(load, settle, at) if settle and settler else probe(load)
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
            elif not fits(load, seconds):
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
    # Confirm the boundary's ends; a settler measures the capacity end on its own (below).
    if stop_reason == "boundary found":
        for end in (high,) if settler is not None else (low, high):
            if end is not None and run(end) is None:
                break
    for _ in range(RECONFIRM):
        if stop_reason != "boundary found":
            break
        capacity, failing = _monotone_fit(probes)
        single = [end for end in ((failing,) if settler is not None else (capacity, failing))
                  if end is not None and sum(p.counted and p.load == end for p in probes) == 1]
        if not single or any(run(end) is None for end in single):
            break
    settled = None
    if settler is not None and stop_reason in ("boundary found", "maximum load"):
        found = stop_reason
        settled = _settle(settler, probes, run,
                          lambda low, high: (None if _gap_closed(low, high, integer, resolution)
                                             else _between(low, high, integer)))
        if stop_reason == "budget" and settled is not None:
            stop_reason = found  # what the search found stands; settling ran out of budget
            settled = dataclasses.replace(
                settled, text=f"{settled.text}; the budget ({budget_s:g} s) ran out first")
    capacity, first_failing = _monotone_fit(probes)
    text = settled.text if settled is not None and settled.text else None
    return CapacityResult(dimension, capacity, first_failing, tuple(probes), stop_reason,
                          clock() - began, budget_s, settled=text,
                          decided=None if text is None or settled is None else settled.decided)


def _settle(settler: Settler, probes: list[ProbeOutcome],
            run: Callable[[float, int], ProbeOutcome | None],
            middle: Callable[[float, float], float | None]) -> Settling | None:
    """Pool and measure the capacity load until its SLOs are decided (a pooled probe that
    fails moves the capacity down); where the capacity load stands at the end (None: no
    capacity is left).  When the capacity moves down past loads never probed (4 users held
    a dozen and is undecided, 2 users held, 3 was never measured), the gap is bisected first
    (``middle(low, high)``: the load between, None when the gap is closed)."""
    def state() -> tuple[float | None, Settling | None]:
        capacity = _monotone_fit(probes)[0]
        if capacity is None:
            return None, None
        return capacity, settler.state([p for p in probes if p.counted and p.load == capacity])

    probed = 0
    while probed < SETTLE_ROUNDS:
        below, above = _monotone_fit(probes)
        between = None if below is None or above is None else middle(below, above)
        if between is not None:
            if run(between, 0) is None:
                break
            continue
        capacity, now = state()
        if capacity is None or now is None or now.decided:
            break
        if now.more > 0:
            probed += 1
            if run(capacity, now.more) is None:
                break
            continue
        # It held on its point estimates but cannot be shown to hold: not the capacity.
        last = max(i for i, p in enumerate(probes) if p.counted and p.load == capacity)
        probes[last] = dataclasses.replace(probes[last], passed=False, undecided=now.text)
    return state()[1]


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

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
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.results.metrics import RunMetrics
from pytest_llmperf.searches.probe_rules import CLIFF_HEADROOM

__all__ = ["CapacityResult", "ProbeOutcome", "search_capacity"]


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe: its load and whether every SLO held there."""

    load: float
    passed: bool
    broke: tuple[str, ...] = ()  # the SLOs it missed, as their verdicts describe them
    headroom: float | None = None  # searches.probe_rules.headroom of its verdicts
    goodput: float | None = None
    duration_s: float = 0.0
    stopped_early: str | None = None
    result: Any = field(default=None, compare=False, repr=False)  # its PerfResult


@dataclass(frozen=True)
class CapacityResult:
    dimension: str  # "users" or "rate"
    capacity: float | None  # highest load where every SLO held (None: not even the lowest)
    first_failing: float | None  # lowest load above it where an SLO broke (None: none found)
    probes: tuple[ProbeOutcome, ...]
    stop_reason: str  # "boundary found", "budget", "maximum load", "minimum load failed"
    elapsed_s: float
    budget_s: float

    @property
    def unit(self) -> str:
        return "users" if self.dimension == "users" else "req/s"

    def count(self, load: float | None) -> tuple[int, int]:
        """(passed, probed) at ``load``."""
        at = [p for p in self.probes if load is not None and p.load == load]
        return sum(p.passed for p in at), len(at)

    @property
    def broke_first(self) -> tuple[str, ...]:
        """What failed at the lowest failing load (empty when nothing failed)."""
        failing = [p for p in self.probes if not p.passed]
        if not failing:
            return ()
        lowest = min(p.load for p in failing)
        return next(p.broke for p in failing if p.load == lowest)

    @property
    def boundary(self) -> str | None:
        """``cliff`` when the capacity load used at most 80 % of every limit and the next load
        missed one; ``gradual`` when it came closer first; None without both ends."""
        if self.capacity is None or self.first_failing is None:
            return None
        shares = [p.headroom for p in self.probes
                  if p.load == self.capacity and p.headroom is not None]
        if not shares:
            return None
        return "cliff" if max(shares) <= CLIFF_HEADROOM else "gradual"

    @property
    def goodput(self) -> float | None:
        """Goodput at the capacity load (the mean over its probes)."""
        values = [p.goodput for p in self.probes
                  if p.load == self.capacity and p.goodput is not None]
        return sum(values) / len(values) if values else None

    @property
    def metric(self) -> str:
        """The capacity metric this search measures (results.metrics.CAPACITY)."""
        return "capacity_max_concurrency" if self.dimension == "users" else "capacity_max_rate"

    def metrics(self) -> RunMetrics:
        """The search's results as metrics an SLO can name (``capacity_max_concurrency >= 8``);
        no capacity found counts as 0."""
        values = {self.metric: self.capacity or 0.0}
        if self.goodput is not None:
            values["capacity_goodput"] = self.goodput
        return RunMetrics({}, values, ())

    def unmeasured(self) -> dict[str, str]:
        """Why the capacity metrics this search does not measure are missing."""
        other = ("capacity_max_rate" if self.dimension == "users"
                 else "capacity_max_concurrency")
        return {other: f"this capacity search is over {self.dimension}, not "
                       f"{'rate' if self.dimension == 'users' else 'users'}",
                "capacity_goodput": "no probe at the capacity load measured a goodput"}

    def load_text(self, load: float | None) -> str:
        if load is None:
            return "-"
        if self.dimension == "rate":
            return f"{load:g} req/s"
        return f"{load:g} user{'' if load == 1 else 's'}"

    @property
    def summary(self) -> str:
        """``max 9 users: 9 users passed 2 of 2, 10 users failed 2 of 2 (ttft_ms.p95 ...)``."""
        passed, probed = self.count(self.capacity)
        if self.capacity is None:
            lowest = min(p.load for p in self.probes)
            text = (f"no capacity found: no load probed held every SLO, down to "
                    f"{self.load_text(lowest)}")
        else:
            text = (f"max {self.load_text(self.capacity)}: {self.load_text(self.capacity)} "
                    f"passed {passed} of {probed}")
        if self.first_failing is not None:
            ok, tried = self.count(self.first_failing)
            text += f", {self.load_text(self.first_failing)} failed {tried - ok} of {tried}"
        noisy = sorted({p.load for p in self.probes
                        if 0 < self.count(p.load)[0] < self.count(p.load)[1]})
        if noisy:
            text += "; passed and failed at " + ", ".join(self.load_text(x) for x in noisy)
        if self.stop_reason == "budget":
            text += f"; the budget ({self.budget_s:g} s) ran out first"
            if self.capacity is None:
                text += ": a lower load may hold"
            elif self.first_failing is None:
                text += ": the capacity may be higher"
        elif self.stop_reason == "minimum load failed":
            text += " (the lowest load searched)"
        elif self.stop_reason == "maximum load":
            text += "; every SLO held up to the maximum load searched: the capacity may be higher"
        return text


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
    capacity = None
    for load in sorted({p.load for p in probes}):
        if all(p.passed for p in probes if p.load <= load):
            capacity = load
        else:
            break
    failing = [p.load for p in probes if not p.passed and (capacity is None or p.load > capacity)]
    return capacity, min(failing) if failing else None

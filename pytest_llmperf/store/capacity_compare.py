"""A capacity search held against the baseline's search of the same test.

A capacity is one number per search, with no interval to bootstrap; what makes a change sure
is the probes behind it.  Against the lowest capacity among the baseline's runs:

- ``regressed``: a load the baseline held fails here on every probe, and was probed at least
  twice (the search's confirmation), e.g. "4 users failed 2 of 2; the baseline held 6";
- ``improved``: every probe passed here at a load above the highest the baseline ever failed
  at, probed at least twice;
- ``no significant change``: the same capacity;
- ``inconclusive``: anything else (a boundary probed once, a search cut short by its budget,
  a search whose edge was disturbed: ``CapacityResult.disturbed``, a load between the two
  capacities that one search left undecided: it sits at its SLO limit, where one run shows it
  holding and the next cannot, so 2 and 3 users there are the same capacity).  A disturbed
  baseline run is left out while an undisturbed one remains (its capacity is only a lower
  bound).

A gate (``capacity_max_concurrency regresses < 20%``) fails the test only on ``regressed``
with the capacity lower than the baseline's by more than the tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_llmperf.results.capacity import CapacityResult
from pytest_llmperf.results.comparison import CapacityChange
from pytest_llmperf.results.thresholds import Gate

__all__ = ["compare_capacity"]


def compare_capacity(baseline: Sequence[CapacityResult], current: CapacityResult,
                     gate: Gate | None = None) -> CapacityChange:
    """``current`` against the baseline runs' searches of the same test and dimension."""
    metric, unit = current.metric, current.unit
    baseline = [b for b in baseline if not b.disturbed] or list(baseline)
    held = [b.capacity or 0.0 for b in baseline]
    base = min(held) if held else None
    for search, whose in ((current, "this search"), *((b, "the baseline's search")
                                                      for b in baseline)):
        if search.disturbed:  # its edge is unknown: neither a regression nor a gain
            return CapacityChange(metric, unit, base, current.capacity, "inconclusive",
                                  f"{whose} was {search.disturbed}", gate)
    failed_at = [b.first_failing for b in baseline if b.first_failing]
    now = current.capacity
    first = current.first_failing
    if base is None:
        return CapacityChange(metric, unit, None, now, "inconclusive",
                              "the baseline has no capacity for this test", gate)
    passed, probed = current.count(first)
    held_now, probed_now = current.count(now)
    if first is not None and first <= base and probed >= 2 and passed == 0:
        verdict = "regressed"
        note = f"{first:g} {unit} failed {probed} of {probed}; the baseline held {base:g}"
    elif now is not None and now == base:
        verdict, note = "no significant change", "the same capacity"
    elif now is not None and failed_at and now > max(failed_at) and probed_now >= 2 \
            and held_now == probed_now:
        verdict = "improved"
        note = (f"{now:g} {unit} passed {probed_now} of {probed_now}; the baseline failed at "
                f"{max(failed_at):g}")
    else:
        verdict = "inconclusive"
        note = _grey_zone(current, baseline, now, base) or \
            "the boundary here or in the baseline rests on single probes"
    failed = False
    if gate is not None and verdict == "regressed":
        allowed = base * (1 - gate.tolerance) if gate.relative else base - gate.tolerance
        failed = (now or 0.0) < allowed
    return CapacityChange(metric, unit, base, now, verdict, note, gate, failed)


def _grey_zone(current: CapacityResult, baseline: Sequence[CapacityResult],
               now: float | None, base: float) -> str | None:
    """Why two capacities that differ are no change: a load between them was left undecided
    (searches.capacity_settle) here or in the baseline; None when none was."""
    low, high = sorted((now or 0.0, base))
    for search, where in ((current, "here"), *((b, "in the baseline") for b in baseline)):
        for probe in search.counted:
            if probe.undecided and low < probe.load <= high:
                return (f"{search.load_text(probe.load)} was undecided {where}: it held on its "
                        "point estimates but sits at its SLO limit, where one run shows it "
                        "holding and the next cannot")
    return None

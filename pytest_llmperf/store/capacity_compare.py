"""A capacity search held against the baseline's search of the same test.

A capacity is one number per search, with no interval to bootstrap; what makes a change sure
is the probes behind it.  Against the lowest capacity among the baseline's runs:

- ``regressed``: a load the baseline held fails here on every probe, and was probed at least
  twice (the search's confirmation), e.g. "4 users failed 2 of 2; the baseline held 6";
- ``improved``: every probe passed here at a load above the highest the baseline ever failed
  at, probed at least twice;
- ``no significant change``: the same capacity;
- ``inconclusive``: anything else (a boundary probed once, a search cut short by its budget).

A gate (``capacity_max_concurrency regresses < 20%``) fails the test only on ``regressed``
with the capacity lower than the baseline's by more than the tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmperf.results.thresholds import Gate

__all__ = ["CapacityChange", "compare_capacity"]


@dataclass(frozen=True)
class CapacityChange:
    metric: str
    unit: str
    baseline: float | None
    current: float | None
    verdict: str
    note: str
    gate: Gate | None = None
    failed: bool = False

    @property
    def change(self) -> float | None:
        if not self.baseline or self.current is None:
            return None
        return (self.current - self.baseline) / self.baseline

    def describe(self) -> str:
        """``6 -> 4 users (-33.3 %): regressed: 4 users failed 2 of 2; the baseline held 6``."""
        change = f" ({self.change * 100:+.1f} %)" if self.change is not None else ""
        gate = f" [gate {self.gate.text}: {'FAILED' if self.failed else 'ok'}]" if self.gate \
            else ""
        return (f"{_number(self.baseline)} -> {_number(self.current)} {self.unit}{change}: "
                f"{self.verdict}: {self.note}{gate}")


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _probes_at(entry: Mapping[str, Any], load: float | None) -> tuple[int, int]:
    """(passed, probed) at ``load`` in a stored capacity entry."""
    rows = [row for row in entry["rows"] if load is not None and row["load"] == load]
    return sum(bool(row["passed"]) for row in rows), len(rows)


def compare_capacity(baseline: Sequence[Mapping[str, Any]], current: Mapping[str, Any],
                     gate: Gate | None = None) -> CapacityChange:
    """``current``'s capacity entry against the baseline runs' entries of the same search."""
    metric, unit = str(current["metric"]), str(current["unit"])
    held = [float(b["capacity"] or 0.0) for b in baseline]
    base = min(held) if held else None
    failed_at = [float(b["first_failing"]) for b in baseline if b.get("first_failing")]
    now = current["capacity"]
    first = current.get("first_failing")
    if base is None:
        return CapacityChange(metric, unit, None, now, "inconclusive",
                              "the baseline has no capacity for this test", gate)
    passed, probed = _probes_at(current, first)
    if first is not None and first <= base and probed >= 2 and passed == 0:
        verdict = "regressed"
        note = (f"{first:g} {unit} failed {probed} of {probed}; the baseline held "
                f"{base:g}")
    elif now is not None and now == base:
        verdict, note = "no significant change", "the same capacity"
    elif now is not None and failed_at and now > max(failed_at) \
            and _probes_at(current, now)[1] >= 2 and _probes_at(current, now)[0] == \
            _probes_at(current, now)[1]:
        verdict = "improved"
        note = (f"{now:g} {unit} passed {_probes_at(current, now)[1]} of "
                f"{_probes_at(current, now)[1]}; the baseline failed at {max(failed_at):g}")
    else:
        verdict = "inconclusive"
        note = "the boundary here or in the baseline rests on single probes"
    failed = False
    if gate is not None and verdict == "regressed":
        allowed = base * (1 - gate.tolerance) if gate.relative else base - gate.tolerance
        failed = (now or 0.0) < allowed
    return CapacityChange(metric, unit, base, now, verdict, note, gate, failed)

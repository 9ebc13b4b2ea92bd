"""A test held against a saved baseline, as records: per metric the change and its confidence
interval (:class:`Row`, :class:`Comparison`), and a capacity search's change
(:class:`CapacityChange`).  How they are computed is :mod:`pytest_llmperf.store.compare`."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError, JSONObject, rounded
from pytest_llmperf.results.statistics import REGRESSED
from pytest_llmperf.results.thresholds import Gate, ThresholdError, parse_gate

__all__ = ["CapacityChange", "Comparison", "Row"]


@dataclass(frozen=True)
class Row:
    """One metric of one test: baseline and current values, the change and its interval (as
    fractions: 0.12 = 12 % higher), and the verdict at ``tolerance``."""

    metric: str  # "tpot_ms.p95"
    unit: str
    higher_is_better: bool
    baseline: float
    current: float
    change: float
    low: float | None  # None: no interval (see note)
    high: float | None
    verdict: str
    tolerance: float
    gate: Gate | None = None
    needed: int | None = None  # requests per window that would settle an inconclusive verdict
    note: str | None = None

    @property
    def failed(self) -> bool:
        """The gate's tolerance was exceeded with confidence."""
        return self.gate is not None and self.verdict == REGRESSED

    def describe(self) -> str:
        """``regressed: +23.1 % [+18.0, +28.5] (gate tpot_ms.p95:10%)``."""
        text = f"{self.verdict}: {self.change * 100:+.1f} %"
        if self.low is not None and self.high is not None:
            text += f" [{self.low * 100:+.1f}, {self.high * 100:+.1f}]"
        if self.gate is not None:
            text += f" (gate {self.gate.text}, {self.gate.origin})"
        if self.needed is not None:
            text += f"; about {self.needed} requests per window would settle it"
        if self.note:
            text += f"; {self.note}"
        return text

    def to_json(self) -> JSONObject:
        return {"metric": self.metric, "unit": self.unit,
                "higher_is_better": self.higher_is_better,
                "baseline": rounded(self.baseline), "current": rounded(self.current),
                "change": rounded(self.change), "low": rounded(self.low),
                "high": rounded(self.high), "verdict": self.verdict,
                "tolerance": rounded(self.tolerance), **_gate_json(self.gate),
                "failed": self.failed, "needed": self.needed, "note": self.note}

    @classmethod
    def from_json(cls, fields: Fields) -> Row:
        return cls(fields.text("metric"), fields.text_or_none("unit") or "",
                   fields.flag("higher_is_better"), fields.number("baseline"),
                   fields.number("current"), fields.number("change"),
                   fields.number_or_none("low"), fields.number_or_none("high"),
                   fields.text("verdict"), fields.number("tolerance", 0.0), _read_gate(fields),
                   fields.integer_or_none("needed"), fields.text_or_none("note"))


@dataclass(frozen=True)
class Comparison:
    """A test's rows against the baseline ``baseline`` (its label), with what both sides ran
    (engine strings differ after an upgrade); ``missing`` says why there is nothing to
    compare (the test is not in the baseline)."""

    baseline: str
    rows: tuple[Row, ...] = ()
    baseline_engine: str = ""
    current_engine: str = ""
    baseline_windows: int = 0
    current_windows: int = 0
    hardware_note: str | None = None  # set when compared across hardware (labelled rows)
    # The engine's own decode time moved much less than the client's TPOT: the client's view
    # changed (a starved client, a slower network), not only the server.
    cross_check: str | None = None
    missing: str | None = None

    @property
    def failed(self) -> tuple[Row, ...]:
        return tuple(row for row in self.rows if row.failed)

    def to_json(self) -> JSONObject:
        return {"baseline": self.baseline, "rows": [row.to_json() for row in self.rows],
                "baseline_engine": self.baseline_engine, "current_engine": self.current_engine,
                "baseline_windows": self.baseline_windows,
                "current_windows": self.current_windows, "hardware_note": self.hardware_note,
                "cross_check": self.cross_check, "missing": self.missing}

    @classmethod
    def from_json(cls, fields: Fields) -> Comparison:
        return cls(fields.text("baseline"), fields.each("rows", Row.from_json),
                   fields.text_or_none("baseline_engine") or "",
                   fields.text_or_none("current_engine") or "",
                   fields.integer("baseline_windows", 0), fields.integer("current_windows", 0),
                   fields.text_or_none("hardware_note"), fields.text_or_none("cross_check"),
                   fields.text_or_none("missing"))


@dataclass(frozen=True)
class CapacityChange:
    """A capacity search against the baseline's (see store.capacity_compare for the rule)."""

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

    def to_json(self) -> JSONObject:
        return {"metric": self.metric, "unit": self.unit, "baseline": self.baseline,
                "current": self.current, "verdict": self.verdict, "note": self.note,
                **_gate_json(self.gate), "failed": self.failed, "description": self.describe()}

    @classmethod
    def from_json(cls, fields: Fields) -> CapacityChange:
        return cls(fields.text("metric"), fields.text_or_none("unit") or "",
                   fields.number_or_none("baseline"), fields.number_or_none("current"),
                   fields.text("verdict"), fields.text_or_none("note") or "",
                   _read_gate(fields), fields.flag("failed"))


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"



def _gate_json(gate: Gate | None) -> JSONObject:
    return {"gate": None if gate is None else gate.text,
            "gate_origin": None if gate is None else gate.origin}


def _read_gate(fields: Fields) -> Gate | None:
    text = fields.text_or_none("gate")
    if text is None:
        return None
    try:
        return parse_gate(text, fields.text_or_none("gate_origin") or "stored gate")
    except ThresholdError as exc:
        raise JSONDecodeError(f"{fields.path}.gate: {exc}") from None

"""Results as a test recorded them: each with the test it came from (:class:`Provenance`), what
it was held to, and what it was compared with.  These are what travels from a pytest-xdist
worker to the controller, what the reports render, and what a run document keeps.

- :class:`RecordedWindow`: one measured window, its SLO verdicts and its comparison.
- :class:`RecordedSweep`: a sweep's (or prefill sweep's) points; each point's window is a
  recorded window of its own (``calls``).
- :class:`RecordedCapacity`: a capacity search, its verdicts and its comparison.
- :class:`RecordedPrefixCache`: the prefix-cache gain; both passes are recorded windows too.

Each has one ``to_json`` / ``from_json`` pair; :func:`search_from_json` reads any search by its
``kind``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pytest_llmperf.results.capacity import CapacityResult
from pytest_llmperf.results.comparison import CapacityChange, Comparison
from pytest_llmperf.results.goodput import goodput_figures
from pytest_llmperf.results.host_names import with_host
from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError, JSONObject, rounded
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.prefix_cache import CacheGain
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.slo import Verdict
from pytest_llmperf.results.window import WindowResult

__all__ = ["Provenance", "RecordedCapacity", "RecordedPrefixCache", "RecordedSearch",
           "RecordedSweep", "RecordedWindow", "search_from_json"]


@dataclass(frozen=True)
class Provenance:
    """Which test measured a result, where, and how that test ended."""

    nodeid: str
    call: int = 1  # the test's n-th measured load (a baseline matches windows by it)
    repeat: int | None = None  # n of --llmperf-repeats, when there are several
    outcome: str = ""  # passed, failed, skipped: known once the test has ended
    # The host that measured it, in a session over several hosts (plugin.hosts): None for the
    # host the session ran on (its document's own fingerprint).
    host: str | None = None
    # The side of an A/B comparison that measured it ("before", "after"; bench.ab).
    side: str | None = None

    @property
    def test(self) -> str:
        """``test_x[llamacpp-smollm2-135m]``, or ``test_x[llamacpp-smollm2-135m@gpu-a]`` when
        another host measured it, ``... (after)`` for a side of an A/B comparison: the node
        id's last part."""
        return with_host(self.nodeid.split("::")[-1], self.host) + self._side_text

    @property
    def shown_nodeid(self) -> str:
        """The node id as the reports show it: with the host that ran it, if another."""
        return with_host(self.nodeid, self.host) + self._side_text

    @property
    def _side_text(self) -> str:
        return f" ({self.side})" if self.side else ""

    def to_json(self) -> JSONObject:
        return {"nodeid": self.nodeid, "call": self.call, "repeat": self.repeat,
                "outcome": self.outcome, **({"host": self.host} if self.host else {}),
                **({"side": self.side} if self.side else {})}

    @classmethod
    def from_json(cls, fields: Fields, position: int = 1) -> Provenance:
        """``position``: the call of a window written before calls were numbered."""
        return cls(fields.text("nodeid"), fields.integer("call", position),
                   fields.integer_or_none("repeat"), fields.text_or_none("outcome") or "",
                   fields.text_or_none("host"), fields.text_or_none("side"))



@dataclass(frozen=True)
class RecordedWindow:
    provenance: Provenance
    window: WindowResult
    verdicts: tuple[Verdict, ...] = ()
    comparison: Comparison | None = None
    timeline_png: str | None = None

    @property
    def goodput(self) -> dict[str, float]:
        """``goodput_req_s``, ``goodput_tokens_s``, ``goodput_pct`` under the SLOs the window
        was held to (results.goodput); empty when none is per-request."""
        return goodput_figures(self.window.run, [v.check for v in self.verdicts])

    def to_json(self) -> JSONObject:
        # goodput is derived (from the requests and the verdicts' SLOs): written for readers
        # of the document, recomputed when read back.
        return {**self.provenance.to_json(), **self.window.to_json(),
                "goodput": {name: rounded(value) for name, value in self.goodput.items()},
                "verdicts": [verdict.to_json() for verdict in self.verdicts],
                "comparison": None if self.comparison is None else self.comparison.to_json(),
                "timeline_png": self.timeline_png}

    @classmethod
    def from_json(cls, fields: Fields) -> RecordedWindow:
        comparison = fields.obj_or_none("comparison")
        return cls(Provenance.from_json(fields), WindowResult.from_json(fields),
                   fields.each("verdicts", Verdict.from_json),
                   None if comparison is None else Comparison.from_json(comparison),
                   fields.text_or_none("timeline_png"))


@dataclass(frozen=True)
class RecordedSweep:
    provenance: Provenance
    served: ServedInfo
    dimension: str  # "users", "rate", or "input_tokens" (a prefill sweep)
    rows: tuple[LoadPoint, ...]
    calls: tuple[int, ...] = ()  # the recorded windows of its points
    slo_lines: Mapping[str, float] = field(default_factory=dict)  # limits drawn on the chart
    chart_png: str | None = None
    left_out: str | None = None  # loads it could not run, and why

    kind: ClassVar[str] = "sweep"

    @property
    def staged(self) -> bool:
        """The stages of one staged-rate schedule (llmperf_stages), not separate loads."""
        return bool(self.rows) and self.rows[0].label.startswith("stage ")

    def to_json(self) -> JSONObject:
        return {"kind": self.kind, **self.provenance.to_json(), "served": self.served.to_json(),
                "dimension": self.dimension, "rows": [row.to_json() for row in self.rows],
                "calls": list(self.calls), "slo_lines": dict(self.slo_lines),
                "chart_png": self.chart_png, "left_out": self.left_out}

    @classmethod
    def from_json(cls, fields: Fields) -> RecordedSweep:
        calls = tuple(int(n) for n in fields.numbers("calls") if n is not None)
        return cls(Provenance.from_json(fields), ServedInfo.from_json(fields.obj("served")),
                   fields.text("dimension"), fields.each("rows", LoadPoint.from_json), calls,
                   fields.number_map("slo_lines"), fields.text_or_none("chart_png"),
                   fields.text_or_none("left_out"))


@dataclass(frozen=True)
class RecordedCapacity:
    provenance: Provenance
    served: ServedInfo
    shape: LoadShape  # the shape whose load was searched
    search: CapacityResult
    slo_lines: Mapping[str, float] = field(default_factory=dict)
    chart_png: str | None = None
    verdicts: tuple[Verdict, ...] = ()  # its capacity SLOs (capacity_max_concurrency >= 8)
    baseline: str | None = None  # the baseline's label, when compared
    comparison: CapacityChange | None = None
    not_compared: str | None = None  # why there was nothing to compare with

    kind: ClassVar[str] = "capacity"

    def to_json(self) -> JSONObject:
        return {"kind": self.kind, **self.provenance.to_json(), "served": self.served.to_json(),
                "shape": self.shape.to_json(), **self.search.to_json(),
                "slo_lines": dict(self.slo_lines), "chart_png": self.chart_png,
                "verdicts": [verdict.to_json() for verdict in self.verdicts],
                "baseline": self.baseline,
                "comparison": None if self.comparison is None else self.comparison.to_json(),
                "not_compared": self.not_compared}

    @classmethod
    def from_json(cls, fields: Fields) -> RecordedCapacity:
        comparison = fields.obj_or_none("comparison")
        return cls(Provenance.from_json(fields), ServedInfo.from_json(fields.obj("served")),
                   LoadShape.from_json(fields.obj("shape")), CapacityResult.from_json(fields),
                   fields.number_map("slo_lines"), fields.text_or_none("chart_png"),
                   fields.each("verdicts", Verdict.from_json), fields.text_or_none("baseline"),
                   None if comparison is None else CapacityChange.from_json(comparison),
                   fields.text_or_none("not_compared"))


@dataclass(frozen=True)
class RecordedPrefixCache:
    provenance: Provenance
    served: ServedInfo
    gain: CacheGain

    kind: ClassVar[str] = "prefix_cache"

    def to_json(self) -> JSONObject:
        return {"kind": self.kind, **self.provenance.to_json(), "served": self.served.to_json(),
                **self.gain.to_json()}

    @classmethod
    def from_json(cls, fields: Fields) -> RecordedPrefixCache:
        return cls(Provenance.from_json(fields), ServedInfo.from_json(fields.obj("served")),
                   CacheGain.from_json(fields))


RecordedSearch = RecordedSweep | RecordedCapacity | RecordedPrefixCache


def search_from_json(fields: Fields) -> RecordedSearch:
    kind = fields.text("kind")
    if kind == RecordedSweep.kind:
        return RecordedSweep.from_json(fields)
    if kind == RecordedCapacity.kind:
        return RecordedCapacity.from_json(fields)
    if kind == RecordedPrefixCache.kind:
        return RecordedPrefixCache.from_json(fields)
    raise JSONDecodeError(f"{fields.path}.kind: unknown kind of search {kind!r} (sweep, "
                          "capacity, prefix_cache)")

"""One configuration's figures in one test: the highest load that held every SLO (from a
capacity search, a sweep, or plain windows whose verdicts all passed), how sure that is, and
the throughput, per-user decode speed, TTFT, GPU memory and energy there."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_llmperf.configs.configuration import ConfigRun
from pytest_llmperf.results.capacity import CapacityResult
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.recorded import RecordedCapacity, RecordedSweep, RecordedWindow

__all__ = ["DECODE_SLO", "Held", "TestFigures", "figures_of", "test_key"]

DECODE_SLO = "decode_tokens_per_s.mean"


def test_key(nodeid: str) -> str:
    """The test without its parameters: ``tests/perf/test_capacity.py::test_capacity_users``."""
    return nodeid.split("[", 1)[0]


@dataclass(frozen=True)
class Held:
    """The highest load at which every SLO held, and what bounds it."""

    dimension: str  # users or rate
    load: float | None  # None: no load held
    first_failing: float | None  # the lowest failing load above it (None: none failed)
    basis: str  # what it rests on, in words
    point: LoadPoint | None = None  # the figures at ``load``
    source: str = "capacity search"  # or "sweep", "windows"
    boundary: str | None = None  # cliff or gradual, for a capacity search

    @property
    def upper(self) -> float:
        """Where the true capacity lies below: the first failing load (inf: none failed)."""
        return math.inf if self.first_failing is None else self.first_failing

    def text(self, load: float | None = None) -> str:
        value = self.load if load is None else load
        if value is None:
            return "-"
        if self.dimension == "rate":
            return f"{value:g} req/s"
        return f"{value:g} user{'' if value == 1 else 's'}"


def told_apart(a: Held, b: Held) -> bool:
    """One held a load the other failed at: their capacities do not overlap."""
    if a.load is None or b.load is None:
        return a.load != b.load
    return a.load >= b.upper or b.load >= a.upper


@dataclass(frozen=True)
class TestFigures:
    run: ConfigRun
    test: str  # test_key of its node ids
    held: Held | None  # None: the test measured no load it could judge
    curve: tuple[tuple[LoadPoint, bool], ...] = ()  # every load's figures, and whether it held
    gpu_memory_peak_mib: float | None = None
    energy_j_per_token: float | None = None
    decode_slo: float | None = None  # the per-user decode speed SLO (tok/s), if any
    outcome: str = ""  # the test's outcome (passed, failed, skipped)
    reason: str | None = None  # why it measured nothing

    @property
    def name(self) -> str:
        return self.test.split("::")[-1]

    @property
    def throughput(self) -> float | None:
        point = self.held.point if self.held else None
        return None if point is None else point.output_token_throughput


def figures_of(run: ConfigRun) -> list[TestFigures]:
    """One :class:`TestFigures` per test of ``run`` (tests that measured nothing included)."""
    tests: dict[str, None] = {}
    for item in (*run.windows, *run.searches):
        tests[test_key(item.provenance.nodeid)] = None
    for test in run.unmeasured:
        tests[test_key(test.nodeid)] = None
    return [_figures(run, test) for test in tests]


def _figures(run: ConfigRun, test: str) -> TestFigures:
    windows = [w for w in run.windows if test_key(w.provenance.nodeid) == test]
    searches = [s for s in run.searches if test_key(s.provenance.nodeid) == test]
    unmeasured = [u for u in run.unmeasured if test_key(u.nodeid) == test]
    outcomes = [r.provenance.outcome for r in (*windows, *searches) if r.provenance.outcome]
    capacity = next((s for s in searches if isinstance(s, RecordedCapacity)), None)
    sweep = next((s for s in searches if isinstance(s, RecordedSweep)
                  and s.dimension in ("users", "rate")), None)
    slo_lines = dict(capacity.slo_lines if capacity else sweep.slo_lines if sweep else {})
    decode = slo_lines.get(DECODE_SLO, _decode_slo(windows))
    held: Held | None
    curve: tuple[tuple[LoadPoint, bool], ...]
    if capacity is not None:
        held, curve = _from_capacity(capacity.search)
        at: list[RecordedWindow] = []
    elif sweep is not None:
        judged = _sweep_windows(sweep, windows)
        held, curve = _from_loads(judged, sweep.dimension, "sweep")
        at = [w for w in judged if held.load is not None and _load(w) == held.load]
    elif windows:
        dimension = "rate" if windows[0].window.shape.is_open else "users"
        judged = [w for w in windows if w.verdicts and _dimension(w) == dimension]
        held, curve = _from_loads(judged, dimension, "windows") if judged else (None, ())
        at = [w for w in judged if held is not None and _load(w) == held.load]
    else:
        reason = "; ".join(f"{u.outcome}: {u.reason}" for u in unmeasured) or "no results"
        outcome = unmeasured[0].outcome if unmeasured else ""
        return TestFigures(run, test, None, outcome=outcome, reason=reason)
    outcome = "failed" if "failed" in outcomes else outcomes[0] if outcomes else ""
    return TestFigures(run, test, held, curve, _most(at, "gpu_memory_peak_mib"),
                       _most(at, "energy_j_per_token"), decode, outcome,
                       None if held is not None else "no window of it was judged against SLOs")


def _decode_slo(windows: Iterable[RecordedWindow]) -> float | None:
    for window in windows:
        for verdict in window.verdicts:
            if verdict.check.key == DECODE_SLO and verdict.check.side == "lower":
                return verdict.check.limit
    return None


def _most(windows: Sequence[RecordedWindow], metric: str) -> float | None:
    values = [v for w in windows if (v := w.window.metrics.value(metric)) is not None]
    return max(values) if values else None


def _load(window: RecordedWindow) -> float:
    return window.window.shape.load


def _dimension(window: RecordedWindow) -> str:
    return "rate" if window.window.shape.is_open else "users"


def _from_capacity(search: CapacityResult) -> tuple[Held, tuple[tuple[LoadPoint, bool], ...]]:
    at = [p.point for p in search.counted
          if p.passed and p.load == search.capacity and p.point is not None]
    # The lowest throughput of the probes at the capacity: the figure a deployment can count on.
    point = min(at, key=lambda p: p.output_token_throughput or 0.0) if at else None
    curve = tuple((p.point, p.passed) for p in search.counted if p.point is not None)
    basis = search.summary
    if search.boundary:
        basis += f" ({search.boundary} boundary)"
    return Held(search.dimension, search.capacity, search.first_failing, basis, point,
                "capacity search", search.boundary), curve


def _sweep_windows(sweep: RecordedSweep,
                   windows: Sequence[RecordedWindow]) -> list[RecordedWindow]:
    calls = set(sweep.calls)
    return [w for w in windows if w.provenance.call in calls and w.verdicts]


def _from_loads(windows: Sequence[RecordedWindow], dimension: str,
                source: str) -> tuple[Held, tuple[tuple[LoadPoint, bool], ...]]:
    """The monotone rule of the capacity search over judged windows: the highest load at which
    every window passed, every lower load passing too."""
    by_load: dict[float, list[bool]] = {}
    for window in windows:
        by_load.setdefault(_load(window), []).append(all(v.passed for v in window.verdicts))
    held: float | None = None
    failing: float | None = None
    for load in sorted(by_load):
        if all(by_load[load]):
            held = load
            continue
        failing = load
        break
    curve = tuple((LoadPoint.of(w.window), all(v.passed for v in w.verdicts)) for w in windows)
    at = [p for p, ok in curve if ok and p.load == held]
    point = min(at, key=lambda p: p.output_token_throughput or 0.0) if at else None
    unit = Held(dimension, None, None, "").text
    parts = [f"{unit(load)} {_tally(by_load[load])}" for load in sorted(by_load)]
    basis = f"{source}: " + ", ".join(parts)
    if failing is None and held is not None:
        basis += f"; nothing above {unit(held)} was run: the capacity may be higher"
    return Held(dimension, held, failing, basis, point, source), curve


def _tally(passes: list[bool]) -> str:
    ok = sum(passes)
    if ok == len(passes):
        return f"passed {ok} of {len(passes)}"
    return f"failed {len(passes) - ok} of {len(passes)}"

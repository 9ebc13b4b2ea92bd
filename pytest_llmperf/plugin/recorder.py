"""One test's results, as it measured them: each window and search recorded with its test, held
to the baseline (``--llmperf-compare``), put into junit properties as it comes, and handed to
the test's report (as JSON, which survives pytest-xdist) when the test ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

from pytest_llmperf.plugin.session import LLMPerfSession, test_name
from pytest_llmperf.results.jsonfields import JSONObject

if TYPE_CHECKING:
    from pytest_llmperf.bench.ab import ABResult
    from pytest_llmperf.results.capacity import CapacityResult
    from pytest_llmperf.results.recorded import RecordedSearch, RecordedWindow
    from pytest_llmperf.results.served import ServedInfo
    from pytest_llmperf.results.slo import Verdict
    from pytest_llmperf.results.thresholds import Gate
    from pytest_llmperf.results.window import WindowResult

__all__ = ["RECORDER_KEY", "ResultRecorder"]


class ResultRecorder:
    """Keeps a test's windows and searches in the order it ran them.  A window is found again by
    its requests (the ``run`` every copy of it shares), never by a counter shared with the
    fixtures."""

    def __init__(self, item: pytest.Item, session: LLMPerfSession) -> None:
        self.item = item
        self.session = session
        self.windows: list[RecordedWindow] = []
        self.searches: list[RecordedSearch] = []
        self._loads = 0
        # Gates exceeded with confidence that llmperf_slo.check has not reported yet, by call
        # (a capacity search's by its dimension): the plugin fails the test with them.
        self.pending_gates: dict[int | str, list[str]] = {}

    # --- windows -------------------------------------------------------------------------

    def record_window(self, window: WindowResult, repeat: int | None,
                      side: str | None = None) -> None:
        """A measured window (the bench's ``on_window``): a new load unless it repeats one;
        ``side``: the A/B side that measured it."""
        from pytest_llmperf.report.charts import write_timeline_png
        from pytest_llmperf.report.junit import window_properties
        from pytest_llmperf.results.recorded import Provenance, RecordedWindow

        if repeat is None or repeat == 1:
            self._loads += 1
        png = None
        if window.resources is not None:
            png = write_timeline_png(window.resources, self.session.settings.report.output_dir
                                     / f"{self._file_stem()}.{len(self.windows) + 1}"
                                       "-timeline.png")
        recorded = RecordedWindow(Provenance(self.item.nodeid, self._loads, repeat, side=side),
                                  window, timeline_png=None if png is None else str(png))
        self.windows.append(recorded)
        prefix = self._prefix(len(self.windows) - 1)
        for name, value in window_properties(window):
            self._property(prefix + name, value)

    def _index(self, window: WindowResult) -> int:
        """Where ``window`` was recorded: the recorded window with the same requests (copies
        of it, its repeats split off, share them); recorded now if it was made elsewhere."""
        for index, recorded in enumerate(self.windows):
            if recorded.window.run is window.run:
                return index
        self.record_window(window, None)
        return len(self.windows) - 1

    def call_of(self, window: WindowResult) -> int:
        return self.windows[self._index(window)].provenance.call

    def _prefix(self, index: int) -> str:
        return "llmperf." if index == 0 else f"llmperf.{index + 1}."

    def set_verdicts(self, window: WindowResult, verdicts: tuple[Verdict, ...]) -> None:
        index = self._index(window)
        self.windows[index] = dataclasses.replace(self.windows[index], verdicts=verdicts)
        for verdict in verdicts:
            self._property(f"{self._prefix(index)}slo[{verdict.check.text}]",
                           f"{verdict.state}: {verdict.describe()}")
            if verdict.check.metric.startswith("server[") and verdict.measured is not None:
                # server[NAME].STAT: the server's own figure, under the SLO's name for it
                self._property(f"{self._prefix(index)}{verdict.check.key}",
                               round(verdict.measured, 4))
        for name, value in self.windows[index].goodput.items():  # under these SLOs
            self._property(f"{self._prefix(index)}{name}", round(value, 4))

    def compare(self, windows: Sequence[WindowResult]) -> None:
        """Hold the windows of one load against the baseline's windows of the same test and
        call; a gate exceeded with confidence is kept to fail the test."""
        baseline = self.session.baseline
        if baseline is None:
            return
        indexes = [self._index(window) for window in windows]
        call = self.windows[indexes[0]].provenance.call
        comparison = baseline.compare(self.item.nodeid, call, windows,
                                      self.gates(windows[0].served.backend,
                                                 windows[0].served.model),
                                      seed=self.session.settings.load.seed)
        last = indexes[-1]
        self.windows[last] = dataclasses.replace(self.windows[last], comparison=comparison)
        prefix = self._prefix(last)
        if comparison.missing:
            self._property(f"{prefix}compare", "not in the baseline")
            return
        for row in comparison.rows:
            self._property(f"{prefix}compare[{row.metric}]", row.describe())
        failed = [f"{row.metric} {row.describe()} -- against {baseline.label}, "
                  f"{windows[0].context}" for row in comparison.failed]
        if failed and comparison.cross_check:
            failed.append(f"cross-check: {comparison.cross_check}")
        if failed:
            self.pending_gates[call] = failed

    def record_ab(self, result: ABResult) -> None:
        """An A/B comparison (bench.ab): its rows on the last window as its comparison, in
        junit as ``llmperf.ab[METRIC]``; a gate B exceeded with confidence fails the test."""
        last = self._index(result.windows[-1])
        self.windows[last] = dataclasses.replace(self.windows[last],
                                                 comparison=result.comparison)
        for row in result.comparison.rows:
            self._property(f"llmperf.ab[{row.metric}]", row.describe())
        if result.drift is not None:
            self._property("llmperf.ab.drift", result.drift.describe(result.names[0]))
        failed = [f"{row.metric} {row.describe()} -- {result.names[1]} against "
                  f"{result.names[0]}, {result.windows[-1].context}" for row in result.failed]
        if failed:
            self.pending_gates[f"ab{last}"] = failed

    # --- searches ------------------------------------------------------------------------

    def record_search(self, search: RecordedSearch) -> None:
        """A sweep, capacity search or prefix-cache result, beside its windows; a capacity
        search's headline figures and a prefix cache's gain become junit properties."""
        from pytest_llmperf.results.recorded import RecordedCapacity

        self.searches.append(search)
        if isinstance(search, RecordedCapacity):
            result = search.search
            name = "max_concurrency" if result.dimension == "users" else "max_rate"
            for key, value in ((name, result.capacity), ("goodput", result.goodput),
                               ("first_failing", result.first_failing),
                               ("boundary", result.boundary), ("summary", result.summary),
                               ("broke_first", "; ".join(result.broke_first) or None),
                               ("probes", len(result.probes)),
                               ("elapsed_s", round(result.elapsed_s, 1))):
                self._property(f"llmperf.capacity.{key}", value)
        elif search.kind == "prefix_cache":
            gain = search.gain  # type: ignore[union-attr]
            for key, value in (("ttft_gain", gain.ttft_gain),
                               ("warm_cached_share", gain.warm_cached_share),
                               ("summary", gain.summary)):
                self._property(f"llmperf.prefix_cache.{key}", value)

    def served_of(self, search: CapacityResult) -> ServedInfo:
        """The served model a capacity search measured."""
        from pytest_llmperf.results.recorded import RecordedCapacity

        for recorded in self.searches:
            if isinstance(recorded, RecordedCapacity) and recorded.search is search:
                return recorded.served
        window = next((p.window for p in search.probes if p.window is not None), None)
        if window is None:
            raise ValueError("this capacity search was not measured in this test")
        return window.served

    def _capacity(self, search: CapacityResult) -> int:
        from pytest_llmperf.results.recorded import RecordedCapacity

        return next(i for i, s in enumerate(self.searches)
                    if isinstance(s, RecordedCapacity) and s.search is search)

    def set_capacity_verdicts(self, search: CapacityResult, verdicts: tuple[Verdict, ...]
                              ) -> None:
        index = self._capacity(search)
        recorded = self.searches[index]
        assert recorded.kind == "capacity"
        self.searches[index] = dataclasses.replace(recorded, verdicts=verdicts)  # type: ignore[arg-type]
        for verdict in verdicts:
            self._property(f"llmperf.capacity.slo[{verdict.check.text}]",
                           f"{verdict.state}: {verdict.describe()}")

    def compare_capacity(self, search: CapacityResult) -> None:
        """Hold a capacity search against the baseline's search of the same test and
        dimension (store.capacity_compare); a gate it fails is kept like a window's."""
        baseline = self.session.baseline
        if baseline is None:
            return
        from pytest_llmperf.results.recorded import RecordedCapacity

        index = self._capacity(search)
        recorded = self.searches[index]
        assert isinstance(recorded, RecordedCapacity)
        change = baseline.compare_capacity(self.item.nodeid, search,
                                           self.gates(recorded.served.backend,
                                                      recorded.served.model))
        missing = "this capacity search is not in the baseline" if change is None else None
        self.searches[index] = dataclasses.replace(recorded, baseline=baseline.label,
                                                   comparison=change, not_compared=missing)
        self._property("llmperf.capacity.compare",
                       change.describe() if change is not None else "not in the baseline")
        if change is not None and change.failed:
            self.pending_gates[f"capacity:{search.dimension}"] = [
                f"{change.metric} {change.describe()} -- against {baseline.label}"]

    # --- what the test reports -----------------------------------------------------------

    def gate_failures(self, result: object) -> list[str]:
        """The exceeded gates of a load (or a capacity search), taken: reported once."""
        from pytest_llmperf.results.capacity import CapacityResult
        from pytest_llmperf.results.window import WindowResult

        if isinstance(result, CapacityResult):
            return self.pending_gates.pop(f"capacity:{result.dimension}", [])
        if isinstance(result, WindowResult):
            return self.pending_gates.pop(self.call_of(result), [])
        return []

    def gates(self, backend: str, model: str) -> list[Gate]:
        """thresholds.toml's gates for this test, replaced per metric by
        --llmperf-compare-fail."""
        gates: dict[str, Gate] = {}
        if self.session.thresholds is not None:
            for gate in self.session.thresholds.gates_for_test(
                    backend=backend, model=model, test=test_name(self.item)):
                gates[gate.key] = gate
        for gate in self.session.settings.store.compare_fail:
            gates[gate.key] = gate
        return list(gates.values())

    def to_json(self) -> JSONObject:
        """What the test's report carries to the controller."""
        return {"windows": [window.to_json() for window in self.windows],
                "searches": [search.to_json() for search in self.searches]}

    def chart_path(self, kind: str) -> str:
        """``OUTPUT/test_x.llamacpp-smollm2-135m.1-sweep.png`` for the test's next chart."""
        return str(self.session.settings.report.output_dir
                   / f"{self._file_stem()}.{len(self.searches) + 1}-{kind}.png")

    def _file_stem(self) -> str:
        """``test_x.llamacpp-smollm2-135m`` (``...@gpu-a`` on another host of the session: hosts
        may share an output directory): no brackets or spaces to quote."""
        from pytest_llmperf.plugin.hosts import host_label
        from pytest_llmperf.results.host_names import with_host

        shown = with_host(self.item.name, host_label(self.item.config))
        name = shown.replace("[", ".").replace("]", "")
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

    def _property(self, name: str, value: object) -> None:
        # What the record_property fixture does, minus its warning under the default
        # junit_family (xunit2): junitxml writes user_properties for every family.  A figure
        # not known (no capacity found, no goodput) or not finite (a rate of inf) is left out:
        # junit consumers want numbers, not the text "None" or "inf".
        from pytest_llmperf.report.junit import junit_value

        if junit_value(value):
            self.item.user_properties.append((name, value))



RECORDER_KEY = pytest.StashKey[ResultRecorder]()

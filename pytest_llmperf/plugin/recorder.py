"""The per-test recorder behind the llmperf fixtures: keeps each measured window's entry for the
reports and junit, compares a load's windows with the baseline (``--llmperf-compare``), and
keeps the gates it exceeded until the test reports them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmperf.plugin.session import GATE_FAILURES_KEY, RESULTS_KEY, LLMPerfSession

if TYPE_CHECKING:
    from pytest_llmperf.load.runner import PerfResult
    from pytest_llmperf.results.slo import Verdict
    from pytest_llmperf.results.thresholds import Gate

__all__ = ["ResultRecorder"]


class ResultRecorder:
    """Keeps a test's results for the reports and junit, compares them with the baseline
    (``--llmperf-compare``) and finds them again for SLO checks."""

    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self._entries: dict[int, dict[str, Any]] = {}  # id(result.run) -> its entry
        self.calls = 0  # llmperf_load calls so far

    def add(self, result: PerfResult, timeline_png: Path | None = None, *, call: int = 1,
            repeat: int | None = None) -> None:
        from pytest_llmperf.report.entry import result_entry
        from pytest_llmperf.report.junit import result_properties

        entries = self.item.stash.setdefault(RESULTS_KEY, [])
        entry = {**result_entry(result, timeline_png), "call": call, "repeat": repeat}
        entries.append(entry)
        self._entries[id(result.run)] = entry
        for name, value in result_properties(entry):
            self._property(self._prefix(entry) + name, value)

    def _prefix(self, entry: dict[str, Any]) -> str:
        windows = [e for e in self.item.stash.get(RESULTS_KEY, []) if "kind" not in e]
        number = next(i for i, e in enumerate(windows, 1) if e is entry)
        return "llmperf." if number == 1 else f"llmperf.{number}."

    def add_search(self, search: object, entry: dict[str, Any]) -> None:
        """A sweep's or capacity search's entry (``kind``: sweep or capacity), kept beside
        the windows; a capacity search's headline figures become junit properties
        (``llmperf.capacity.max_concurrency``, ``.max_rate``, ``.goodput``, ...)."""
        self.item.stash.setdefault(RESULTS_KEY, []).append(entry)
        self._entries[id(search)] = entry
        if entry["kind"] == "prefix_cache":
            for key in ("ttft_gain", "warm_cached_share", "summary"):
                self._property(f"llmperf.prefix_cache.{key}", entry[key])
        if entry["kind"] != "capacity":
            return
        name = "max_concurrency" if entry["dimension"] == "users" else "max_rate"
        for key, value in ((name, entry["capacity"]), ("goodput", entry["goodput"]),
                           ("first_failing", entry["first_failing"]),
                           ("boundary", entry["boundary"]), ("summary", entry["summary"]),
                           ("broke_first", "; ".join(entry["broke_first"]) or None),
                           ("probes", len(entry["rows"])), ("elapsed_s", entry["elapsed_s"])):
            self._property(f"llmperf.capacity.{key}", value)

    def add_capacity_verdicts(self, search: object, verdicts: tuple[Verdict, ...]) -> None:
        from pytest_llmperf.report.entry import verdict_entry

        entry = self._entries[id(search)]
        entry["verdicts"] = [verdict_entry(v) for v in verdicts]
        for verdict in verdicts:
            self._property(f"llmperf.capacity.slo[{verdict.check.text}]",
                           f"{verdict.state}: {verdict.describe()}")

    def _entry(self, result: PerfResult) -> dict[str, Any]:
        if id(result.run) not in self._entries:
            self.add(result)
        return self._entries[id(result.run)]

    def add_verdicts(self, result: PerfResult, verdicts: tuple[Verdict, ...]) -> None:
        from pytest_llmperf.report.entry import verdict_entry

        entry = self._entry(result)
        entry["verdicts"] = [verdict_entry(v) for v in verdicts]
        prefix = self._prefix(entry)
        for verdict in verdicts:
            self._property(f"{prefix}slo[{verdict.check.text}]",
                           f"{verdict.state}: {verdict.describe()}")

    def compare(self, result: PerfResult) -> None:
        """Hold the windows of one load against the baseline's windows of the same test and
        call; a gate exceeded with confidence is kept to fail the test (:meth:`gate_failures`)."""
        from pytest_llmperf.plugin.session import active_session
        from pytest_llmperf.report.entry import comparison_entry
        from pytest_llmperf.store.compare import compare_windows

        session = active_session(self.item.config)
        baseline = session.baseline
        if baseline is None:
            return
        windows = [self._entry(window) for window in result.windows]
        key = (self.item.nodeid, windows[0]["call"])
        before = baseline.windows.get(key)
        last = windows[-1]
        if not before:
            last["comparison"] = {"baseline": baseline.label, "rows": [],
                                  "missing": "this test and call are not in the baseline"}
            self._property(f"{self._prefix(last)}compare", "not in the baseline")
            return
        comparison = compare_windows(before, windows,
                                     _gates(session, result.served.backend,
                                            result.served.model, self.item),
                                     seed=session.settings.seed,
                                     hardware_note=baseline.hardware_note)
        last["comparison"] = comparison_entry(comparison, baseline.label)
        prefix = self._prefix(last)
        for row in comparison.rows:
            self._property(f"{prefix}compare[{row.metric}]", row.describe())
        failed = [f"{row.metric} {row.describe()} -- against {baseline.label}, "
                  f"{result.context}" for row in comparison.failed]
        if failed and comparison.cross_check:
            failed.append(f"cross-check: {comparison.cross_check}")
        if failed:
            self.item.stash.setdefault(GATE_FAILURES_KEY, {})[id(result.run)] = failed

    def compare_capacity(self, search: object) -> None:
        """Hold a capacity search against the baseline's search of the same test and
        dimension (store.capacity_compare); a gate it fails is kept like a window's."""
        from pytest_llmperf.plugin.session import active_session
        from pytest_llmperf.store.capacity_compare import compare_capacity

        session = active_session(self.item.config)
        baseline = session.baseline
        if baseline is None:
            return
        entry = self._entries[id(search)]
        before = baseline.capacities.get((self.item.nodeid, entry["dimension"]))
        if not before:
            entry["comparison"] = {"baseline": baseline.label,
                                   "missing": "this capacity search is not in the baseline"}
            self._property("llmperf.capacity.compare", "not in the baseline")
            return
        gates = _gates(session, entry["backend"], entry["model"], self.item)
        change = compare_capacity(before, entry,
                                  next((g for g in gates if g.metric == entry["metric"]), None))
        entry["comparison"] = {"baseline": baseline.label, "missing": None,
                               "verdict": change.verdict, "failed": change.failed,
                               "description": change.describe()}
        self._property("llmperf.capacity.compare", change.describe())
        if change.failed:
            self.item.stash.setdefault(GATE_FAILURES_KEY, {})[id(search)] = [
                f"{entry['metric']} {change.describe()} -- against {baseline.label}"]

    def gate_failures(self, result: object) -> list[str]:
        """The exceeded gates of a load (or a capacity search), taken: reported once."""
        run = getattr(result, "run", None)
        key = id(run) if run is not None else id(result)
        return self.item.stash.get(GATE_FAILURES_KEY, {}).pop(key, [])

    def _property(self, name: str, value: object) -> None:
        # What the record_property fixture does, minus its warning under the default
        # junit_family (xunit2): junitxml writes user_properties for every family.
        self.item.user_properties.append((name, value))


def _gates(session: LLMPerfSession, backend: str, model: str, item: pytest.Item) -> list[Gate]:
    """thresholds.toml's gates for this test, replaced per metric by --llmperf-compare-fail."""
    gates: dict[str, Gate] = {}
    if session.thresholds is not None:
        for gate in session.thresholds.gates_for_test(
                backend=backend, model=model,
                test=getattr(item, "originalname", item.name)):
            gates[gate.key] = gate
    for gate in session.settings.compare_fail:
        gates[gate.key] = gate
    return list(gates.values())

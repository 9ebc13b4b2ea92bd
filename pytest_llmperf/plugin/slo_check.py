"""``llmperf_slo.check(...)``: hold a measured window, a sweep or a capacity search to the
SLOs of thresholds.toml that apply to the test, and fail the test with what missed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_llmperf.plugin.recorder import ResultRecorder
from pytest_llmperf.plugin.session import test_name

if TYPE_CHECKING:
    from pytest_llmperf.results.capacity import CapacityResult
    from pytest_llmperf.results.slo import Verdict
    from pytest_llmperf.results.sweep import SweepResult
    from pytest_llmperf.results.thresholds import Check
    from pytest_llmperf.results.window import WindowResult
    from pytest_llmperf.settings.groups import CheckSettings

__all__ = ["SLOChecker", "sizing_checks", "test_checks"]


def sizing_checks(request: pytest.FixtureRequest, backend: str, model: str
                  ) -> tuple[Check, ...]:
    """The window SLOs of this test that size its windows (results.sequential); none (the
    window then takes --llmperf-requests) when there is no thresholds file."""
    from pytest_llmperf.plugin.session import active_session
    from pytest_llmperf.results.metrics import CAPACITY

    thresholds = active_session(request.config).thresholds
    if thresholds is None:
        return ()
    return tuple(c for c in thresholds.for_test(backend=backend, model=model,
                                                test=test_name(request.node))
                 if c.metric not in CAPACITY)


def test_checks(request: pytest.FixtureRequest, backend: str, model: str,
                *, capacity: bool = False) -> tuple[Check, ...]:
    """The SLOs for this test of ``model`` on ``backend``: those on measured windows, or
    (``capacity``) those on a capacity search's results.  No thresholds file, or no SLO for a
    window, fails the test."""
    from pytest_llmperf.plugin.session import active_session
    from pytest_llmperf.results.metrics import CAPACITY

    session = active_session(request.config)
    thresholds = session.thresholds
    if thresholds is None:
        pytest.fail(f"no thresholds file: {session.settings.checks.thresholds} does not exist; "
                    "create it or pass --thresholds PATH", pytrace=False)
    name = test_name(request.node)
    checks = tuple(c for c in thresholds.for_test(backend=backend, model=model, test=name)
                   if (c.metric in CAPACITY) == capacity)
    if not checks and not capacity:
        pytest.fail(f"no SLO in {thresholds.path} applies to {name} ({model} on {backend})",
                    pytrace=False)
    return checks


class SLOChecker:
    """``check(result)``: hold a result to the thresholds that apply to this test."""

    def __init__(self, request: pytest.FixtureRequest, recorder: ResultRecorder,
                 settings: CheckSettings) -> None:
        self._request = request
        self._recorder = recorder
        self._settings = settings

    def check(self, result: WindowResult | SweepResult | CapacityResult) -> tuple[Verdict, ...]:
        """Fails the test on a missed SLO; returns the verdicts (of the first window)."""
        from pytest_llmperf.results.capacity import CapacityResult
        from pytest_llmperf.results.sweep import SweepResult

        if isinstance(result, CapacityResult):
            lines, first = self._capacity_lines(result)
        elif isinstance(result, SweepResult):
            lines, first = [], ()
            for point in result.points:
                more, verdicts = self._window_lines(point)
                lines += more
                first = first or verdicts
        else:
            lines, first = self._window_lines(result)
        if lines:
            report = self._recorder.session.settings.report.report
            if report:
                lines.append(f"full results: {report}")
            pytest.fail("\n".join(lines), pytrace=False)
        return first

    def _window_lines(self, result: WindowResult) -> tuple[list[str], tuple[Verdict, ...]]:
        from pytest_llmperf.results.judge import judge_window, window_problems

        checks = test_checks(self._request, result.served.backend, result.served.model)
        lines: list[str] = []
        first: tuple[Verdict, ...] = ()
        windows = result.windows
        for number, window in enumerate(windows, 1):
            verdicts = judge_window(window, checks, require_gpu=self._settings.require_gpu,
                                    inconclusive=self._settings.inconclusive)
            self._recorder.set_verdicts(window, verdicts)
            first = first or verdicts
            lines += window_problems(window, verdicts,
                                     strict_validity=self._settings.strict_validity,
                                     number=number, of=len(windows))
        lines += self._recorder.gate_failures(result)
        return lines, first

    def _capacity_lines(self, result: CapacityResult) -> tuple[list[str], tuple[Verdict, ...]]:
        from pytest_llmperf.results.judge import capacity_problems, judge_capacity

        served = self._recorder.served_of(result)
        checks = test_checks(self._request, served.backend, served.model, capacity=True)
        verdicts = judge_capacity(result, checks)
        self._recorder.set_capacity_verdicts(result, verdicts)
        return (capacity_problems(result, verdicts, served.description)
                + self._recorder.gate_failures(result), verdicts)

"""``llmperf_slo.check(...)``: hold a measured window, a sweep or a capacity search to the
SLOs of thresholds.toml that apply to the test, and fail the test with what missed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_llmperf.plugin.recorder import ResultRecorder

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.load.runner import PerfResult
    from pytest_llmperf.results.slo import Verdict
    from pytest_llmperf.results.sweep import SweepResult
    from pytest_llmperf.results.thresholds import Check
    from pytest_llmperf.searches.capacity import CapacityResult
    from pytest_llmperf.settings.resolve import Settings

__all__ = ["SLOChecker", "judge_window", "test_checks"]


def test_checks(request: pytest.FixtureRequest, served: ServedModel,
                *, capacity: bool = False) -> tuple[Check, ...]:
    """The SLOs for this test of ``served``: those on measured windows, or (``capacity``)
    those on a capacity search's results.  No thresholds file or no SLO fails the test."""
    from pytest_llmperf.plugin.session import active_session
    from pytest_llmperf.results.metrics import CAPACITY

    session = active_session(request.config)
    settings, thresholds = session.settings, session.thresholds
    if thresholds is None:
        pytest.fail(f"no thresholds file: {settings.thresholds} does not exist; create it "
                    "or pass --thresholds PATH", pytrace=False)
    test_name = getattr(request.node, "originalname", request.node.name)
    checks = tuple(c for c in thresholds.for_test(backend=served.backend, model=served.model,
                                                  test=test_name)
                   if (c.metric in CAPACITY) == capacity)
    if not checks and not capacity:
        pytest.fail(f"no SLO in {thresholds.path} applies to {test_name} "
                    f"({served.description})", pytrace=False)
    return checks


def judge_window(window: PerfResult, checks: tuple[Check, ...],
                 settings: Settings) -> tuple[Verdict, ...]:
    """The verdicts of one measured window (resources unmeasured here are skipped, unless
    --llmperf-require-gpu; percentiles the sample cannot support follow
    --llmperf-inconclusive)."""
    from pytest_llmperf.observe.telemetry import GPU_METRICS
    from pytest_llmperf.results.slo import evaluate

    return evaluate(window.metrics, checks, unmeasured=_unmeasured(window),
                    required=GPU_METRICS if settings.require_gpu else (),
                    inconclusive=settings.inconclusive)


def _unmeasured(result: PerfResult) -> dict[str, str]:
    from pytest_llmperf.observe.telemetry import unmeasured_reasons
    from pytest_llmperf.results.metrics import RESOURCES

    if result.telemetry is None:
        return {name: "no telemetry was taken for this result" for name in RESOURCES}
    return unmeasured_reasons(dict(result.telemetry))


class SLOChecker:
    """``check(result)``: hold a result to the thresholds that apply to this test."""

    def __init__(self, request: pytest.FixtureRequest, recorder: ResultRecorder) -> None:
        self._request = request
        self._recorder = recorder

    def check(self, result: PerfResult | SweepResult | CapacityResult) -> tuple[Verdict, ...]:
        """Fails the test on a missed SLO; returns the verdicts (of the first window)."""
        from pytest_llmperf.results.sweep import SweepResult
        from pytest_llmperf.searches.capacity import CapacityResult

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
            report = self._settings().report
            if report:
                lines.append(f"full results: {report}")
            pytest.fail("\n".join(lines), pytrace=False)
        return first

    def _settings(self) -> Settings:
        from pytest_llmperf.plugin.session import active_session

        return active_session(self._request.config).settings

    def _window_lines(self, result: PerfResult) -> tuple[list[str], tuple[Verdict, ...]]:
        from pytest_llmperf.results.errors import error_summary
        from pytest_llmperf.results.slo import failure_message

        settings = self._settings()
        checks = test_checks(self._request, result.served)
        lines: list[str] = []
        first: tuple[Verdict, ...] = ()
        windows = result.windows
        for number, window in enumerate(windows, 1):
            verdicts = judge_window(window, checks, settings)
            self._recorder.add_verdicts(window, verdicts)
            first = first or verdicts
            context = window.context + (f", window {number} of {len(windows)}"
                                        if len(windows) > 1 else "")
            message = failure_message(verdicts, context)
            if window.overload:  # its latencies measure the window's length, not the server
                lines.append(f"{context}: {window.overload}")
            marks = "; ".join(f"{mark}: {', '.join(crossed)}"
                              for mark, crossed in window.validity_marks.items())
            if marks and settings.strict_validity:
                lines.append(f"{context}: the numbers cannot be trusted "
                             f"(--llmperf-strict-validity): {marks}")
            if message:
                lines.append(message)
                if marks and not settings.strict_validity:  # why the numbers may be off
                    lines.append(f"{context}: note: {marks}")
                if window.run.stopped_early:  # e.g. the deadline cut it
                    lines.append(f"{context}: stopped early: {window.run.stopped_early}")
                errors = error_summary(window.run.records)
                if errors:
                    lines.append(errors)
        lines += self._recorder.gate_failures(result)
        return lines, first

    def _capacity_lines(self, result: CapacityResult) -> tuple[list[str], tuple[Verdict, ...]]:
        from pytest_llmperf.results.slo import evaluate, failure_message

        served = result.probes[0].result.served
        checks = test_checks(self._request, served, capacity=True)
        verdicts = evaluate(result.metrics(), checks, unmeasured=result.unmeasured())
        self._recorder.add_capacity_verdicts(result, verdicts)
        message = failure_message(verdicts, f"{result.summary}, {served.description}")
        return ([message] if message else []) + self._recorder.gate_failures(result), verdicts

"""``startup_s``: a launched engine's launch to ready (and ``first_ttft_ms``, its first
request's TTFT once ready), recorded with what was served, held by
an SLO in any window of its target, skipped (with why) for a server the session attached to,
and shown in the report, junit and the result store."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_llmperf.report.junit import window_properties
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.judge import judge_window
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.recorded import Provenance, RecordedWindow
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.thresholds import parse_check
from pytest_llmperf.results.window import WindowResult

MS = 1_000_000
LAUNCHED = ServedInfo("llamacpp", "smollm2-135m", "xllamacpp 2026.10.1", startup_s=4.25,
                      first_ttft_ms=812.5)
ATTACHED = ServedInfo("openai", "smollm2-135m", "openai at http://10.0.0.7:8000")


def window(served: ServedInfo) -> WindowResult:
    records = tuple(RequestRecord(i, i * 1000 * MS, (i * 1000 * MS + 200 * MS,
                                                     i * 1000 * MS + 300 * MS),
                                  i * 1000 * MS + 300 * MS, 2) for i in range(4))
    return WindowResult(served, LoadShape.closed(1), 2, LoadRun(records, 0, 3300 * MS, 1, 0))


def through_json(result: WindowResult) -> WindowResult:
    return WindowResult.from_json(Fields(json.loads(json.dumps(result.to_json()))))


def test_an_slo_on_startup_holds_the_launched_engine_and_fails_a_slow_start() -> None:
    verdicts = judge_window(window(LAUNCHED), [parse_check("startup_s < 600", "t"),
                                               parse_check("startup_s < 3", "t")])
    assert [(v.measured, v.state) for v in verdicts] == [(4.25, "pass"), (4.25, "fail")]


def test_an_attached_server_s_startup_slo_is_skipped_with_why() -> None:
    verdict, = judge_window(window(ATTACHED), [parse_check("startup_s < 600", "t")])
    assert verdict.state == "skip" and verdict.measured is None
    assert verdict.unmeasured_reason == ("smollm2-135m on openai (openai at "
                                         "http://10.0.0.7:8000) was not launched by this "
                                         "session: its startup was not seen")


def test_startup_survives_the_result_store_and_is_absent_when_not_seen() -> None:
    launched, attached = through_json(window(LAUNCHED)), through_json(window(ATTACHED))
    assert launched.served.startup_s == 4.25
    assert launched.metrics.value("startup_s") == 4.25
    assert "startup_s" not in window(ATTACHED).to_json()["served"]  # type: ignore[operator]
    assert attached.served.startup_s is None and attached.metrics.value("startup_s") is None


def test_startup_is_in_junit_and_in_the_report_s_environment(tmp_path: Path) -> None:
    assert ("startup_s", 4.25) in window_properties(window(LAUNCHED))
    assert all(name != "startup_s" for name, _ in window_properties(window(ATTACHED)))
    text = render_markdown([RecordedWindow(Provenance("t.py::test_x[llamacpp-smollm2-135m]"),
                                           window(LAUNCHED))], tmp_path)
    row = next(line for line in text.splitlines() if "startup (launch to ready)" in line)
    assert "4.2 s" in row



def test_the_first_request_s_ttft_is_held_like_startup() -> None:
    launched, attached = window(LAUNCHED), window(ATTACHED)
    verdicts = judge_window(launched, [parse_check("first_ttft_ms < 1000", "t"),
                                       parse_check("first_ttft_ms < 500", "t")])
    assert [(v.measured, v.state) for v in verdicts] == [(812.5, "pass"), (812.5, "fail")]
    verdict, = judge_window(attached, [parse_check("first_ttft_ms < 1000", "t")])
    assert verdict.state == "skip"
    assert "its first request was not seen" in (verdict.unmeasured_reason or "")
    assert through_json(launched).served.first_ttft_ms == 812.5
    assert through_json(attached).served.first_ttft_ms is None
    assert ("first_ttft_ms", 812.5) in window_properties(launched)


def test_the_first_request_s_ttft_is_in_the_report_s_environment(tmp_path: Path) -> None:
    text = render_markdown([RecordedWindow(Provenance("t.py::test_x[llamacpp-smollm2-135m]"),
                                           window(LAUNCHED))], tmp_path)
    row = next(line for line in text.splitlines() if "first request's TTFT" in line)
    assert "812.5 ms" in row

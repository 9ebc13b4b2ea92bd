"""Goodput in every window held to SLOs: the requests that each met every per-request SLO of
the test (the DistServe definition vLLM, AIPerf and inference-perf use), per second, their
output tokens per second, and their share of the window's requests; as SLOs of their own, and
in the report, junit and the result store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.judge import judge_window
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.recorded import Provenance, RecordedWindow
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.thresholds import Check, parse_check
from pytest_llmperf.results.window import WindowResult

MS = 1_000_000
SERVED = ServedInfo("llamacpp", "smollm2-135m", "xllamacpp 2026.10.1")


def request(i: int, ttft_ms: int, tpot_ms: int, tokens: int = 11) -> RequestRecord:
    """A request sent at i s: first token after ``ttft_ms``, then one every ``tpot_ms``."""
    send = i * 1000 * MS
    chunks = tuple(send + (ttft_ms + k * tpot_ms) * MS for k in range(tokens))
    return RequestRecord(i, send, chunks, chunks[-1], tokens)


def window(records: Sequence[RequestRecord]) -> WindowResult:
    run = LoadRun(tuple(records), 0, 10_000 * MS, 1, 0)  # a 10 s window
    return WindowResult(SERVED, LoadShape.closed(1), 11, run)


# Four requests in 10 s: two good, one too slow to its first token, one with slow tokens,
# and one that failed (not good, but counted among the window's requests).
MIXED = window([request(0, 200, 10), request(1, 300, 20), request(2, 1500, 10),
                request(3, 200, 150),
                RequestRecord(4, 4000 * MS, (), 4500 * MS, 0, error="HTTP 500")])
SLOS = [parse_check("ttft_ms.p95 < 1000", "t"), parse_check("tpot_ms.p95 < 100", "t"),
        parse_check("error_rate <= 0.01", "t")]


def measured(checks: Sequence[Check], result: WindowResult = MIXED) -> list[float | None]:
    return [v.measured for v in judge_window(result, checks)]


def test_goodput_counts_the_requests_that_each_met_every_per_request_slo() -> None:
    goodput = [parse_check(text, "t") for text in
               ("goodput_req_s >= 0.1", "goodput_tokens_s >= 1", "goodput_pct >= 95")]
    verdicts = judge_window(MIXED, [*SLOS, *goodput])
    figures = {v.check.metric: (v.measured, v.state) for v in verdicts[len(SLOS):]}
    # 2 good of 5 requests in 10 s, 11 output tokens each.
    assert figures == {"goodput_req_s": (pytest.approx(0.2), "pass"),
                       "goodput_tokens_s": (pytest.approx(2.2), "pass"),
                       "goodput_pct": (pytest.approx(40.0), "fail")}


def test_goodput_follows_the_slos_it_is_held_beside() -> None:
    """Without the TPOT limit the request with slow tokens is good too."""
    only_ttft = [parse_check("ttft_ms.median < 1000", "t"), parse_check("goodput_pct >= 50", "t")]
    assert measured(only_ttft)[1] == pytest.approx(60.0)


def test_with_no_per_request_slo_goodput_has_no_meaning_and_says_why() -> None:
    verdict, = judge_window(MIXED, [parse_check("goodput_pct >= 50", "t")])
    assert verdict.measured is None and verdict.state == "fail"
    assert verdict.unmeasured_reason is not None
    assert "no per-request SLO" in verdict.unmeasured_reason


def test_goodput_is_in_the_report_and_the_result_store(tmp_path: Path) -> None:
    verdicts = judge_window(MIXED, SLOS)
    recorded = RecordedWindow(Provenance("t.py::test_x[llamacpp-smollm2-135m]"), MIXED,
                              verdicts)
    stored = json.loads(json.dumps(recorded.to_json()))
    assert stored["goodput"] == {"goodput_req_s": 0.2, "goodput_tokens_s": 2.2,
                                 "goodput_pct": 40.0}
    back = RecordedWindow.from_json(Fields(stored))
    assert back.goodput == pytest.approx(recorded.goodput)
    text = render_markdown([recorded], tmp_path)
    line = next(line for line in text.splitlines() if line.startswith("Goodput"))
    assert line == ("Goodput (the requests that each met ttft_ms < 1000, tpot_ms < 100): "
                    "0.2 req/s, 2.2 output tok/s, 40.0 % of the window's requests.")


def test_an_embeddings_window_s_goodput_has_no_tokens_figure(tmp_path: Path) -> None:
    """Vectors, not tokens: the line gives the requests' rate and share only."""
    records = [RequestRecord(i, i * 1000 * MS, (), i * 1000 * MS + (300 + 400 * (i == 3)) * MS,
                             0, input_tokens=24, embedded_inputs=8) for i in range(4)]
    embeddings = window(records)
    verdicts = judge_window(embeddings, [parse_check("e2el_ms.median < 500", "t")])
    text = render_markdown([RecordedWindow(Provenance("t.py::test_e[llamacpp-smollm2-135m]"),
                                           embeddings, verdicts)], tmp_path)
    line = next(line for line in text.splitlines() if line.startswith("Goodput"))
    assert line == ("Goodput (the requests that each met e2el_ms < 500): 0.3 req/s, "
                    "75.0 % of the window's requests.")

"""Goodput, the early stop of a clearly failed probe, and headroom."""

from __future__ import annotations

import pytest

from pytest_llmperf.results.goodput import goodput
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.slo import evaluate
from pytest_llmperf.results.thresholds import parse_check
from pytest_llmperf.searches.probe_rules import clearly_failed, headroom

MS = 1_000_000


def answer(i: int, ttft_ms: float, tpot_ms: float, tokens: int = 11,
           error: str | None = None) -> RequestRecord:
    send = i * 1000 * MS
    first = send + int(ttft_ms * MS)
    chunks = tuple(first + int(k * tpot_ms * MS) for k in range(tokens))
    return RequestRecord(i, send, chunks, chunks[-1], tokens, error=error)


def check(text: str):
    return parse_check(text, "test")


def test_goodput_counts_requests_meeting_every_per_request_slo() -> None:
    records = (answer(0, 100, 20), answer(1, 900, 20), answer(2, 100, 60), answer(3, 100, 20),
               answer(4, 100, 20, error="HTTP 500"))
    run = LoadRun(records, 0, 5000 * MS, 1, 0)
    checks = [check("ttft_ms.p95 < 500"), check("tpot_ms.mean < 50"), check("error_rate <= 0")]
    # Good: 0 and 3 (1 is too slow to start, 2 too slow per token, 4 failed): 2 in 5 s.
    assert goodput(run, checks) == pytest.approx(0.4)
    # With no per-request SLO every completed request is good.
    assert goodput(run, [check("error_rate <= 0")]) == pytest.approx(0.8)


def test_a_percentile_is_decided_once_enough_planned_requests_miss_it() -> None:
    slo = [check("ttft_ms.p90 < 500")]
    # 20 planned: p90 sits at rank 19 x 0.9 = 17.1, between sorted ranks 17 and 18 (0-based).
    # Two slow answers are ranks 18 and 19 at most; three fill 17..19, both ranks p90 uses.
    slow = [answer(i, 900, 20) for i in range(2)]
    assert clearly_failed(slo, slow, planned=20) is None
    reason = clearly_failed(slo, [*slow, answer(2, 900, 20)], planned=20)
    assert reason == "3 of 20 planned requests already miss ttft_ms.p90 < 500: its p90 cannot " \
                     "meet it"
    # A window of 20 with those 3 does fail it, however fast the other 17 are.
    fast = [answer(i, 100, 20) for i in range(3, 20)]
    run = LoadRun(tuple([*slow, answer(2, 900, 20), *fast]), 0, 20_000 * MS, 1, 0)
    assert not evaluate(summarize(run), slo)[0].met
    # Two of 20 do not: the p90 interpolates a fast value in.
    assert evaluate(summarize(LoadRun(tuple([*slow, *fast, answer(20, 100, 20)]), 0,
                                      21_000 * MS, 1, 0)), slo)[0].met


def test_a_mean_is_decided_with_confidence_and_not_before_sixteen_requests() -> None:
    slo = [check("decode_tokens_per_s.mean >= 10")]
    slow = [answer(i, 100, 200 + i) for i in range(15)]  # about 5 tok/s each
    assert clearly_failed(slo, slow, planned=64) is None
    reason = clearly_failed(slo, [*slow, answer(15, 100, 210)], planned=64)
    assert reason is not None and reason.startswith("the mean of 16 requests, 4.")
    # Close to the limit with spread: not decided.
    near = [answer(i, 100, 95 + 10 * (i % 2)) for i in range(30)]
    assert clearly_failed(slo, near, planned=64) is None


def test_errors_decide_an_error_rate_limit() -> None:
    slo = [check("error_rate <= 0.05")]
    failed = [answer(i, 100, 20, error="HTTP 503") for i in range(3)]
    assert clearly_failed(slo, failed[:1], planned=40) is None  # 1/40 <= 0.05
    assert clearly_failed(slo, failed, planned=40) == (
        "3 of 40 planned requests failed already: error_rate <= 0.05 cannot hold")


def test_headroom_is_the_share_of_the_way_to_the_nearest_limit() -> None:
    run = LoadRun((answer(0, 400, 50), answer(1, 400, 50)), 0, 2000 * MS, 1, 0)
    verdicts = evaluate(summarize(run), [check("ttft_ms.mean < 1000"),
                                         check("decode_tokens_per_s.mean >= 10")])
    # TTFT uses 40 % of its limit; 20 tok/s against >= 10 uses 50 %.
    assert headroom(verdicts) == pytest.approx(0.5)

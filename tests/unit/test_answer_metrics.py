"""The answer a user reads (reasoning apart) and the prefix cache, from hand-built records.

Times are given in milliseconds and stored in nanoseconds; every expected number below is
worked out by hand from them.
"""

from __future__ import annotations

import dataclasses

import pytest

from pytest_llmperf.results.answer import (
    answer_decode_speed,
    answer_e2el_ms,
    answer_span_ns,
    cache_hit_rate,
    time_to_answer_ms,
)
from pytest_llmperf.results.metrics import (
    DISTRIBUTIONS,
    PER_REQUEST,
    SCALARS,
    RunMetrics,
    summarize,
)
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource

MS = 1_000_000  # ns per ms

ANSWER_DISTRIBUTIONS = ("reasoning_tokens", "answer_tokens", "time_to_answer_ms",
                        "answer_e2el_ms", "answer_decode_tokens_per_s", "cached_tokens")


def rec(request_id: int, chunks_ms: tuple[int, ...], output_tokens: int, *, send_ms: int = 0,
        reasoning_chunks: int = 0, answer_ms: tuple[int, int] | None = None,
        reasoning_tokens: int | None = 0, input_tokens: int | None = 100,
        cached_tokens: int | None = None, error: str | None = None) -> RequestRecord:
    chunk_ns = tuple(c * MS for c in chunks_ms)
    return RequestRecord(
        request_id=request_id,
        send_ns=send_ms * MS,
        chunk_ns=chunk_ns,
        end_ns=chunk_ns[-1] if chunk_ns else send_ms * MS,
        output_tokens=output_tokens,
        output_token_source=TokenSource.USAGE,
        input_tokens=input_tokens,
        input_token_source=TokenSource.USAGE if input_tokens is not None else None,
        error=error,
        cached_tokens=cached_tokens,
        reasoning_chunks=reasoning_chunks,
        answer_start_ns=answer_ms[0] * MS if answer_ms else None,
        answer_end_ns=answer_ms[1] * MS if answer_ms else None,
        reasoning_tokens=reasoning_tokens,
    )


def metrics(*records: RequestRecord) -> RunMetrics:
    return summarize(LoadRun(records=records, window_start_ns=0, window_end_ns=2000 * MS,
                             concurrency=1, warmup_requests=0))


# A plain model: send at 0, chunks at 10, 20, 50 ms, 4 tokens.
PLAIN = rec(1, (10, 20, 50), 4)
# A reasoning model: sent at 100; reasoning read at 105 and 110; answer read from 130 to 170;
# 10 tokens, 4 of them reasoning: 6 answer tokens, (6 - 1) / 0.040 s = 125 tok/s.
REASONED = rec(2, (105, 110, 130, 150, 170), 10, send_ms=100, reasoning_chunks=2,
               answer_ms=(130, 170), reasoning_tokens=4)
# Reasoned and ran out of length before any answer text.
UNANSWERED = rec(3, (5, 9, 12), 3, reasoning_chunks=3, reasoning_tokens=3)


def test_the_answer_metrics_are_listed() -> None:
    for name in ANSWER_DISTRIBUTIONS:
        assert name in DISTRIBUTIONS
    assert {"unanswered", "cache_hit_rate"} <= set(SCALARS)
    # Each request's own value is the metric's (goodput counts requests by them) ...
    assert PER_REQUEST["time_to_answer_ms"](PLAIN) == time_to_answer_ms(PLAIN)
    assert PER_REQUEST["answer_e2el_ms"](PLAIN) == answer_e2el_ms(PLAIN)
    assert PER_REQUEST["answer_decode_tokens_per_s"](PLAIN) == answer_decode_speed(PLAIN)
    # ... and a request that streamed nothing (embeddings) has none.
    unstreamed = dataclasses.replace(PLAIN, chunk_ns=(), embedded_inputs=1)
    assert PER_REQUEST["time_to_answer_ms"](unstreamed) is None
    assert PER_REQUEST["ttft_ms"](unstreamed) is None
    assert PER_REQUEST["e2el_ms"](unstreamed) == (PLAIN.end_ns - PLAIN.send_ns) / MS


def test_without_reasoning_the_answer_is_the_whole_stream() -> None:
    assert answer_span_ns(PLAIN) == (10 * MS, 50 * MS)
    assert time_to_answer_ms(PLAIN) == 10.0
    assert answer_e2el_ms(PLAIN) == 50.0
    # (4 - 1) tokens over 40 ms = 75 tok/s, the same as 1 / TPOT.
    assert answer_decode_speed(PLAIN) == pytest.approx(75.0, rel=1e-12)
    assert PLAIN.answer_tokens == 4
    m = metrics(PLAIN)
    assert m.distributions["time_to_answer_ms"] == m.distributions["ttft_ms"] == (10.0,)
    assert m.distributions["answer_e2el_ms"] == m.distributions["e2el_ms"] == (50.0,)
    assert m.distributions["answer_decode_tokens_per_s"] == pytest.approx(
        m.distributions["decode_tokens_per_s"], rel=1e-12)
    assert m.distributions["answer_decode_tokens_per_s"] == pytest.approx((75.0,), rel=1e-12)
    assert m.distributions["answer_tokens"] == m.distributions["output_tokens"] == (4.0,)
    assert m.distributions["reasoning_tokens"] == (0.0,)
    assert m.scalars["unanswered"] == 0.0


def test_a_reasoning_request_s_answer_starts_at_its_first_answer_read() -> None:
    assert answer_span_ns(REASONED) == (130 * MS, 170 * MS)
    assert REASONED.answer_tokens == 6
    m = metrics(REASONED)
    assert m.distributions["ttft_ms"] == (5.0,)  # the first read of any kind
    assert m.distributions["time_to_answer_ms"] == (30.0,)
    assert m.distributions["e2el_ms"] == (70.0,)
    assert m.distributions["answer_e2el_ms"] == (70.0,)
    assert m.distributions["reasoning_tokens"] == (4.0,)
    assert m.distributions["answer_tokens"] == (6.0,)
    assert m.distributions["output_tokens"] == (10.0,)
    assert m.distributions["answer_decode_tokens_per_s"] == pytest.approx((125.0,), rel=1e-12)
    # The stream's decode speed counts reasoning: (10 - 1) / 0.065 s.
    assert m.distributions["decode_tokens_per_s"] == pytest.approx((9 / 0.065,), rel=1e-12)


def test_an_answer_that_ends_before_the_stream_uses_its_own_last_read() -> None:
    # Reasoning after the answer (a model that thinks again): the answer ends at 30 ms.
    record = rec(4, (10, 20, 30, 60), 8, reasoning_chunks=2, answer_ms=(20, 30),
                 reasoning_tokens=5)
    assert answer_e2el_ms(record) == 30.0
    assert time_to_answer_ms(record) == 20.0
    assert answer_decode_speed(record) == pytest.approx(2 / 0.010, rel=1e-12)  # (3-1) / 10 ms


def test_unknown_reasoning_tokens_leave_the_answer_length_and_speed_out() -> None:
    record = rec(5, (105, 110, 130, 150, 170), 10, send_ms=100, reasoning_chunks=2,
                 answer_ms=(130, 170), reasoning_tokens=None)
    assert record.answer_tokens is None
    assert answer_decode_speed(record) is None
    assert time_to_answer_ms(record) == 30.0
    m = metrics(record, PLAIN)
    assert m.distributions["reasoning_tokens"] == (0.0,)  # PLAIN's only
    assert m.distributions["answer_tokens"] == (4.0,)
    assert m.distributions["answer_decode_tokens_per_s"] == pytest.approx((75.0,), rel=1e-12)
    assert m.distributions["time_to_answer_ms"] == (30.0, 10.0)
    assert m.distributions["answer_e2el_ms"] == (70.0, 50.0)
    assert m.distributions["output_tokens"] == (10.0, 4.0)
    assert m.scalars["unanswered"] == 0.0


def test_a_request_that_only_reasoned_is_unanswered() -> None:
    assert UNANSWERED.ok
    assert answer_span_ns(UNANSWERED) is None
    assert time_to_answer_ms(UNANSWERED) is None
    assert answer_e2el_ms(UNANSWERED) is None
    assert answer_decode_speed(UNANSWERED) is None
    m = metrics(PLAIN, UNANSWERED, REASONED)
    assert m.scalars["unanswered"] == 1.0
    assert m.scalars["completed"] == 3.0
    assert m.distributions["time_to_answer_ms"] == (10.0, 30.0)
    assert m.distributions["answer_e2el_ms"] == (50.0, 70.0)
    assert m.distributions["ttft_ms"] == (10.0, 5.0, 5.0)
    assert m.distributions["answer_tokens"] == (4.0, 0.0, 6.0)
    assert m.distributions["reasoning_tokens"] == (0.0, 3.0, 4.0)
    assert m.value("time_to_answer_ms", "mean") == 20.0
    assert m.value("time_to_answer_ms", "max") == 30.0


def test_a_reasoning_request_with_only_an_answer_start_is_unanswered() -> None:
    record = rec(6, (5, 9), 2, reasoning_chunks=1, answer_ms=None, reasoning_tokens=1)
    half = dataclasses.replace(record, answer_start_ns=9 * MS)  # no answer end
    assert answer_span_ns(half) is None
    assert metrics(half).scalars["unanswered"] == 1.0


def test_answer_decode_needs_two_answer_tokens_in_two_reads() -> None:
    one_token = rec(7, (10, 20, 30), 5, reasoning_chunks=2, answer_ms=(30, 30),
                    reasoning_tokens=4)
    one_read = rec(8, (10, 20, 30), 6, reasoning_chunks=2, answer_ms=(30, 30),
                   reasoning_tokens=3)
    two_reads_one_token = rec(9, (10, 20, 30), 5, reasoning_chunks=1, answer_ms=(20, 30),
                              reasoning_tokens=4)
    single_chunk = rec(10, (10,), 3)
    for record in (one_token, one_read, two_reads_one_token, single_chunk):
        assert answer_decode_speed(record) is None, record.request_id
    assert time_to_answer_ms(one_read) == 30.0
    m = metrics(one_token, one_read, two_reads_one_token, single_chunk)
    assert m.distributions["answer_decode_tokens_per_s"] == ()
    assert m.value("answer_decode_tokens_per_s", "mean") is None
    assert m.distributions["answer_tokens"] == (1.0, 3.0, 1.0, 3.0)


def test_cache_hit_rate_over_the_requests_that_report_cached_tokens() -> None:
    told = rec(11, (10, 20), 2, input_tokens=100, cached_tokens=50)
    told_none = rec(12, (10, 20), 2, input_tokens=300, cached_tokens=0)
    silent = rec(13, (10, 20), 2, input_tokens=1000, cached_tokens=None)
    # (50 + 0) / (100 + 300): the silent request's 1000 prompt tokens do not count.
    assert cache_hit_rate([told, told_none, silent]) == 0.125
    m = metrics(told, told_none, silent)
    assert m.scalars["cache_hit_rate"] == 0.125
    assert m.value("cache_hit_rate") == 0.125
    assert m.distributions["cached_tokens"] == (50.0, 0.0)


def test_cache_hit_rate_is_absent_when_no_request_reports_it() -> None:
    records = (rec(14, (10, 20), 2), rec(15, (10, 20), 2, input_tokens=None))
    assert cache_hit_rate(records) is None
    m = metrics(*records)
    assert "cache_hit_rate" not in m.scalars
    assert m.value("cache_hit_rate") is None
    assert m.distributions["cached_tokens"] == ()


def test_cache_hit_rate_needs_the_prompt_length() -> None:
    no_input = rec(16, (10, 20), 2, input_tokens=None, cached_tokens=40)
    zero_input = rec(17, (10, 20), 2, input_tokens=0, cached_tokens=0)
    assert cache_hit_rate([no_input, zero_input]) is None
    full = rec(18, (10, 20), 2, input_tokens=80, cached_tokens=80)
    assert cache_hit_rate([no_input, zero_input, full]) == 1.0
    m = metrics(no_input, zero_input, full)
    assert m.scalars["cache_hit_rate"] == 1.0
    assert m.distributions["cached_tokens"] == (40.0, 0.0, 80.0)


def test_failed_requests_count_in_no_answer_or_cache_metric() -> None:
    errored = rec(19, (105, 110, 130, 150, 170), 10, send_ms=100, reasoning_chunks=2,
                  answer_ms=(130, 170), reasoning_tokens=4, cached_tokens=100,
                  error="connection reset")
    errored_unanswered = rec(20, (5, 9), 2, reasoning_chunks=2, reasoning_tokens=2,
                             cached_tokens=0, error="timeout")
    no_tokens = rec(21, (), 0, cached_tokens=90)  # nothing streamed: not completed
    told = rec(22, (10, 20), 2, input_tokens=200, cached_tokens=50)
    m = metrics(errored, errored_unanswered, no_tokens, PLAIN, told)
    assert (m.scalars["completed"], m.scalars["failed"]) == (2.0, 3.0)
    assert m.scalars["unanswered"] == 0.0
    assert m.scalars["cache_hit_rate"] == 0.25  # 50 / 200: told's only
    assert m.distributions["cached_tokens"] == (50.0,)
    assert m.distributions["time_to_answer_ms"] == (10.0, 10.0)
    assert m.distributions["answer_e2el_ms"] == (50.0, 20.0)
    assert m.distributions["reasoning_tokens"] == (0.0, 0.0)
    assert m.distributions["answer_tokens"] == (4.0, 2.0)


def test_only_failed_requests_leave_every_answer_metric_empty() -> None:
    errored = rec(23, (10, 20), 2, reasoning_chunks=1, answer_ms=(20, 20),
                  reasoning_tokens=1, cached_tokens=5, error="boom")
    m = metrics(errored)
    for name in ANSWER_DISTRIBUTIONS:
        assert m.distributions[name] == (), name
    assert m.scalars["unanswered"] == 0.0
    assert "cache_hit_rate" not in m.scalars


def test_summary_reports_the_answer_distributions() -> None:
    summary = metrics(PLAIN, REASONED).summary()
    assert summary["time_to_answer_ms"]["mean"] == 20.0
    assert summary["time_to_answer_ms"]["min"] == 10.0
    assert summary["answer_e2el_ms"]["median"] == 60.0
    assert summary["answer_tokens"]["max"] == 6.0
    assert summary["cached_tokens"]["mean"] is None

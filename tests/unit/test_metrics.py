"""Metric definitions, checked against small hand-computed runs.

Times in the records are nanoseconds; the helpers below take milliseconds so that the
arithmetic in the comments can be read directly.
"""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_llmperf.results.metrics import (
    DISTRIBUTIONS,
    REPORTED_STATISTICS,
    SCALARS,
    e2el_ms,
    itl_ms,
    parse_statistic,
    percentile,
    statistic,
    summarize,
    tpot_ms,
    ttft_ms,
)
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource

MS = 1_000_000  # ns per ms


def rec(
    request_id: int,
    send_ms: float,
    chunks_ms: tuple[float, ...],
    output_tokens: int,
    *,
    input_tokens: int | None = None,
    source: TokenSource | None = TokenSource.USAGE,
    error: str | None = None,
) -> RequestRecord:
    chunk_ns = tuple(int(c * MS) for c in chunks_ms)
    return RequestRecord(
        request_id=request_id,
        send_ns=int(send_ms * MS),
        chunk_ns=chunk_ns,
        end_ns=chunk_ns[-1] if chunk_ns else int(send_ms * MS),
        output_tokens=output_tokens,
        output_token_source=source,
        input_tokens=input_tokens,
        input_token_source=TokenSource.USAGE if input_tokens is not None else None,
        error=error,
    )


def run_of(*records: RequestRecord, start_ms: float = 0, end_ms: float = 2500) -> LoadRun:
    return LoadRun(
        records=records,
        window_start_ns=int(start_ms * MS),
        window_end_ns=int(end_ms * MS),
        concurrency=2,
        warmup_requests=0,
    )


# A: send 0, chunks at 100, 150, 250 ms, 4 output tokens (the last chunk carried two)
#    TTFT 100, E2EL 250, TPOT (250-100)/(4-1) = 50, ITL [50, 100], decode 1000/50 = 20 tok/s
A = rec(0, 0, (100, 150, 250), 4, input_tokens=20)
# B: send 1000, chunks at 1040, 1060, 1080, 1100, 1120 ms, 5 output tokens
#    TTFT 40, E2EL 120, TPOT (120-40)/(5-1) = 20, ITL [20, 20, 20, 20], decode 1000/20 = 50 tok/s
B = rec(1, 1000, (1040, 1060, 1080, 1100, 1120), 5, input_tokens=30,
        source=TokenSource.TOKENIZER)
# C: one output token: send 2000, chunk at 2030 -> TTFT 30, E2EL 30, no TPOT, no ITL
#    input_tokens unknown (None): counted as 0 in total throughput
C = rec(2, 2000, (2030,), 1)
# Failed requests: an error despite chunks, no chunks at all, chunks but 0 output tokens.
D = rec(3, 100, (110, 120), 2, input_tokens=100, error="server error in stream: boom")
E = rec(4, 200, (), 0, input_tokens=100, error=None)
F = rec(5, 300, (310, 320), 0, input_tokens=100, error=None)


# --- per-request definitions ---------------------------------------------------------------


def test_per_request_definitions() -> None:
    assert ttft_ms(A) == 100.0
    assert e2el_ms(A) == 250.0
    assert tpot_ms(A) == pytest.approx(50.0)
    assert itl_ms(A) == pytest.approx([50.0, 100.0])

    assert ttft_ms(B) == 40.0
    assert e2el_ms(B) == 120.0
    assert tpot_ms(B) == pytest.approx(20.0)
    assert itl_ms(B) == pytest.approx([20.0, 20.0, 20.0, 20.0])


def test_single_token_request_has_ttft_but_no_tpot_or_itl() -> None:
    assert ttft_ms(C) == 30.0
    assert e2el_ms(C) == 30.0
    assert tpot_ms(C) is None
    assert itl_ms(C) == []


def test_times_are_relative_to_send_not_absolute() -> None:
    # send at 5 s, first chunk 5.2 s, last 5.5 s, 4 tokens -> TTFT 200, E2EL 500, TPOT 300/3
    r = rec(0, 5000, (5200, 5300, 5500), 4)
    assert ttft_ms(r) == pytest.approx(200.0)
    assert e2el_ms(r) == pytest.approx(500.0)
    assert tpot_ms(r) == pytest.approx(100.0)


def test_ok_means_no_error_some_chunks_and_some_tokens() -> None:
    assert A.ok and B.ok and C.ok
    assert not D.ok  # error set
    assert not E.ok  # no chunks
    assert not F.ok  # zero output tokens


# --- aggregation ---------------------------------------------------------------------------


def test_distributions_over_completed_requests_only() -> None:
    m = summarize(run_of(A, B, C, D, E, F))
    d = m.distributions
    assert d["ttft_ms"] == pytest.approx((100.0, 40.0, 30.0))
    assert d["e2el_ms"] == pytest.approx((250.0, 120.0, 30.0))
    # C (one token) has no TPOT and so no decode speed
    assert d["tpot_ms"] == pytest.approx((50.0, 20.0))
    assert d["decode_tokens_per_s"] == pytest.approx((20.0, 50.0))
    # ITL pooled over requests: A's two gaps, then B's four
    assert d["itl_ms"] == pytest.approx((50.0, 100.0, 20.0, 20.0, 20.0, 20.0))
    assert d["output_tokens"] == (4.0, 5.0, 1.0)
    # C's unknown input count is left out of the distribution (not counted as 0)
    assert d["input_tokens"] == (20.0, 30.0)


def test_whole_run_scalars() -> None:
    m = summarize(run_of(A, B, C, D, E, F, start_ms=0, end_ms=2500))
    s = m.scalars
    # window 0 .. 2500 ms = 2.5 s
    assert s["duration_s"] == pytest.approx(2.5)
    # 3 completed (A, B, C) / 2.5 s = 1.2 req/s
    assert s["completed"] == 3.0
    assert s["request_throughput"] == pytest.approx(1.2)
    # output tokens 4 + 5 + 1 = 10 / 2.5 s = 4 tok/s (D's 2 tokens do not count)
    assert s["output_token_throughput"] == pytest.approx(4.0)
    # input 20 + 30 + 0 (C: None) = 50, plus 10 output = 60 / 2.5 s = 24 tok/s
    # (the failed requests' 100 input tokens each do not count)
    assert s["total_token_throughput"] == pytest.approx(24.0)
    # 3 failed (D, E, F) / 6 requests
    assert s["failed"] == 3.0
    assert s["error_rate"] == pytest.approx(0.5)
    # Open-loop figures and the cache hit rate (no server said) are absent, never 0; so are
    # the figures the requests alone do not give (goodput needs the SLOs, startup the launch).
    assert set(s) == set(SCALARS) - {"offered_rate", "send_rate", "queue_growth", "cache_hit_rate",
                                     "embedded_inputs_per_s", "input_token_throughput",
                                     "goodput_req_s", "goodput_tokens_s", "goodput_pct",
                                     "startup_s", "first_ttft_ms"}
    assert set(m.distributions) == set(DISTRIBUTIONS)


def test_throughput_uses_the_window_not_the_request_times() -> None:
    # The same request in a window of 4 s (1000 .. 5000 ms): 1 req / 4 s, 4 tok / 4 s
    m = summarize(run_of(A, start_ms=1000, end_ms=5000))
    assert m.scalars["duration_s"] == pytest.approx(4.0)
    assert m.scalars["request_throughput"] == pytest.approx(0.25)
    assert m.scalars["output_token_throughput"] == pytest.approx(1.0)
    # (20 input + 4 output) / 4 s = 6 tok/s
    assert m.scalars["total_token_throughput"] == pytest.approx(6.0)


def test_empty_window_gives_zero_throughput_not_a_division_error() -> None:
    m = summarize(run_of(A, start_ms=100, end_ms=100))
    assert m.scalars["duration_s"] == 0.0
    assert m.scalars["request_throughput"] == 0.0
    assert m.scalars["output_token_throughput"] == 0.0
    assert m.scalars["total_token_throughput"] == 0.0
    # A window whose end precedes its start also counts as empty.
    assert run_of(start_ms=200, end_ms=100).duration_s == 0.0


def test_single_token_request_counts_in_ttft_but_not_tpot_or_decode() -> None:
    m = summarize(run_of(C))
    assert m.value("ttft_ms") == pytest.approx(30.0)
    assert m.value("e2el_ms") == pytest.approx(30.0)
    assert m.distributions["tpot_ms"] == ()
    assert m.distributions["decode_tokens_per_s"] == ()
    assert m.distributions["itl_ms"] == ()
    assert m.value("tpot_ms", "p95") is None
    assert m.value("decode_tokens_per_s") is None
    assert m.scalars["completed"] == 1.0
    assert m.scalars["error_rate"] == 0.0


def test_all_tokens_in_one_chunk_have_no_tpot_and_are_counted_as_untimed() -> None:
    # send 0, one chunk at 80 ms carrying 3 tokens: the client saw no decode at all; a TPOT of
    # (80-80)/2 = 0 would flatter TPOT and 1/0 is no speed.  A (timed) is beside it.
    m = summarize(run_of(rec(0, 0, (80,), 3), A))
    assert m.distributions["tpot_ms"] == pytest.approx((50.0,))
    assert m.distributions["decode_tokens_per_s"] == pytest.approx((20.0,))
    assert m.scalars["untimed_decodes"] == 1.0
    assert m.scalars["completed"] == 2.0  # still a completed request: TTFT and E2EL count


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 6)), min_size=1, max_size=20))
def test_tpot_and_decode_speed_cover_the_same_requests(shapes: list[tuple[int, int]]) -> None:
    """Every completed request with 2+ tokens is in both distributions or counted untimed."""
    records = [rec(i, 0, tuple(10 + 5 * k for k in range(chunks + 1)) if chunks else (10,),
                   tokens) for i, (chunks, tokens) in enumerate(shapes)]
    m = summarize(run_of(*records))
    assert len(m.distributions["tpot_ms"]) == len(m.distributions["decode_tokens_per_s"])
    multi = sum(r.output_tokens > 1 for r in records)
    assert len(m.distributions["tpot_ms"]) + m.scalars["untimed_decodes"] == multi


def test_output_token_sources_of_completed_requests() -> None:
    assert summarize(run_of(A, B, C)).output_token_sources == ("tokenizer", "usage")
    assert summarize(run_of(A, C)).output_token_sources == ("usage",)
    # A failed request's source is not reported.
    failed_tok = rec(9, 0, (10,), 0, source=TokenSource.TOKENIZER)
    assert summarize(run_of(A, failed_tok)).output_token_sources == ("usage",)
    no_source = rec(9, 0, (10,), 1, source=None)
    assert summarize(run_of(no_source)).output_token_sources == ()


def test_run_with_no_completed_request() -> None:
    m = summarize(run_of(D, E, F))
    for name in DISTRIBUTIONS:
        assert m.distributions[name] == ()
        assert m.value(name) is None
        assert m.value(name, "p99") is None
    assert m.value("error_rate") == 1.0
    assert m.value("completed") == 0.0
    assert m.value("failed") == 3.0
    assert m.value("request_throughput") == 0.0
    assert m.output_token_sources == ()


def test_run_with_no_requests_at_all() -> None:
    m = summarize(run_of())
    assert m.scalars["error_rate"] == 0.0
    assert m.scalars["completed"] == 0.0
    assert m.value("ttft_ms") is None


# --- RunMetrics.value and summary -----------------------------------------------------------


def test_value_of_scalars_and_distributions() -> None:
    m = summarize(run_of(A, B, C, D, E, F))
    assert m.value("error_rate") == pytest.approx(0.5)
    assert m.value("request_throughput") == pytest.approx(1.2)
    # no statistic given: the mean.  TTFT (100 + 40 + 30) / 3 = 56.67
    assert m.value("ttft_ms") == pytest.approx(170.0 / 3)
    assert m.value("ttft_ms", "median") == pytest.approx(40.0)
    assert m.value("ttft_ms", "min") == pytest.approx(30.0)
    assert m.value("ttft_ms", "max") == pytest.approx(100.0)
    # sorted TTFT [30, 40, 100], p90: rank 2 * 0.9 = 1.8 -> 40 + 0.8 * (100 - 40) = 88
    assert m.value("ttft_ms", "p90") == pytest.approx(88.0)
    # TPOT [50, 20]: mean 35, population stdev 15
    assert m.value("tpot_ms") == pytest.approx(35.0)
    assert m.value("tpot_ms", "stdev") == pytest.approx(15.0)
    # ITL [50, 100, 20, 20, 20, 20]: sum 230 / 6
    assert m.value("itl_ms", "mean") == pytest.approx(230.0 / 6)
    assert m.value("itl_ms", "max") == pytest.approx(100.0)


def test_value_rejects_an_unknown_statistic() -> None:
    m = summarize(run_of(A))
    with pytest.raises(ValueError, match="avg"):
        m.value("ttft_ms", "avg")


def test_summary_has_every_distribution_and_reported_statistic() -> None:
    m = summarize(run_of(A, B, C))
    summary = m.summary()
    assert set(summary) == set(DISTRIBUTIONS)
    for name, stats in summary.items():
        assert tuple(stats) == REPORTED_STATISTICS
        for stat, value in stats.items():
            assert value == m.value(name, stat)
    assert summary["ttft_ms"]["max"] == pytest.approx(100.0)
    assert summary["tpot_ms"]["min"] == pytest.approx(20.0)


def test_summary_of_a_failed_run_is_all_none() -> None:
    summary = summarize(run_of(D)).summary()
    assert set(summary) == set(DISTRIBUTIONS)
    assert all(v is None for stats in summary.values() for v in stats.values())


# --- statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        # [1, 2, 3, 4]: rank = (4 - 1) * q / 100
        ([1, 2, 3, 4], 90, 3.7),  # rank 2.7 -> 3 + 0.7 * (4 - 3)
        ([1, 2, 3, 4], 50, 2.5),  # rank 1.5 -> 2 + 0.5
        ([1, 2, 3, 4], 25, 1.75),  # rank 0.75 -> 1 + 0.75
        ([1, 2, 3, 4], 0, 1.0),
        ([1, 2, 3, 4], 100, 4.0),
        ([1, 2, 3, 4], 99.9, 3.997),  # rank 2.997
        ([4, 1, 3, 2], 90, 3.7),  # input order does not matter
        ([10, 20], 95, 19.5),  # rank 0.95 -> 10 + 0.95 * 10
        ([7], 37, 7.0),  # one value: every percentile is that value
        ([1, 2, 3, 4, 5], 50, 3.0),  # rank 2 exactly: no interpolation
        ([0, 10, 10, 100], 75, 32.5),  # rank 2.25 -> 10 + 0.25 * 90
    ],
)
def test_percentile_hand_values(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_raises() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_percentile_matches_numpy() -> None:
    """numpy is not a dependency: compared only where it happens to be installed."""
    np = pytest.importorskip("numpy")
    values = [3.5, 1.0, 9.25, 4.0, 4.0, 120.0, 0.5, 17.0, 2.0]
    for q in (0, 1, 5, 10, 25, 33.3, 50, 66.6, 75, 90, 95, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q))), q


# 2, 4, 4, 4, 5, 5, 7, 9: mean 40 / 8 = 5; squared deviations 9+1+1+1+0+0+4+16 = 32,
# population variance 32 / 8 = 4 -> stdev 2 (the sample stdev would be sqrt(32/7) = 2.14).
STAT_VALUES = [9.0, 2.0, 4.0, 4.0, 5.0, 4.0, 5.0, 7.0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mean", 5.0),
        ("median", 4.5),  # sorted [2,4,4,4,5,5,7,9], rank 3.5 -> (4 + 5) / 2
        ("min", 2.0),
        ("max", 9.0),
        ("stdev", 2.0),  # population, see above
        ("p95", 8.3),  # rank 7 * 0.95 = 6.65 -> 7 + 0.65 * (9 - 7)
        ("p99.9", 8.986),  # rank 6.993 -> 7 + 0.993 * 2
        ("p0", 2.0),
        ("p100", 9.0),
        ("p50", 4.5),
        ("p25", 4.0),  # rank 1.75 -> 4 + 0.75 * 0
    ],
)
def test_parse_statistic(name: str, expected: float) -> None:
    func = parse_statistic(name)
    assert func is not None
    assert func(STAT_VALUES) == pytest.approx(expected)
    assert statistic(STAT_VALUES, name) == pytest.approx(expected)


@pytest.mark.parametrize(
    "name", ["p101", "p100.5", "p1000", "px", "p", "p-1", "P95", "avg", "", "p95 ", "mean2"]
)
def test_parse_statistic_rejects_invalid_names(name: str) -> None:
    assert parse_statistic(name) is None
    with pytest.raises(ValueError, match="unknown statistic"):
        statistic([1.0, 2.0], name)


def test_stdev_of_equal_values_is_zero_and_of_one_value_too() -> None:
    assert statistic([3.0, 3.0, 3.0], "stdev") == 0.0
    assert statistic([3.0], "stdev") == 0.0


def test_reported_statistics_are_all_valid() -> None:
    for name in REPORTED_STATISTICS:
        assert parse_statistic(name) is not None


# --- properties ----------------------------------------------------------------------------

# Integer-valued samples keep every interpolation exact, so the properties hold without
# floating-point slack.
samples = st.lists(st.integers(-10**6, 10**6).map(float), min_size=1, max_size=40)
quantiles = st.floats(0, 100, allow_nan=False)


@settings(database=None, deadline=None)
@given(samples, quantiles, quantiles)
def test_percentile_is_monotonic_and_within_range(
    values: list[float], q1: float, q2: float
) -> None:
    low_q, high_q = sorted((q1, q2))
    low, high = percentile(values, low_q), percentile(values, high_q)
    assert min(values) <= low <= high <= max(values)
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)


@settings(database=None, deadline=None)
@given(samples)
def test_named_statistics_agree_with_the_standard_library(values: list[float]) -> None:
    assert statistic(values, "median") == statistics.median(values)
    assert statistic(values, "p50") == statistics.median(values)
    assert statistic(values, "mean") == pytest.approx(statistics.fmean(values))
    assert statistic(values, "stdev") == pytest.approx(statistics.pstdev(values), abs=1e-6)


@settings(database=None, deadline=None)
@given(
    send=st.integers(0, 10**12),
    first=st.integers(0, 10**10),
    gaps=st.lists(st.integers(0, 10**9), max_size=20),
    extra_tokens=st.integers(0, 5),
)
def test_per_request_metrics_fit_together(
    send: int, first: int, gaps: list[int], extra_tokens: int
) -> None:
    """TTFT + sum(ITL) = E2EL, and TTFT + TPOT * (tokens - 1) = E2EL."""
    chunks = [send + first]
    for gap in gaps:
        chunks.append(chunks[-1] + gap)
    tokens = len(chunks) + extra_tokens  # a chunk may carry several tokens
    r = RequestRecord(0, send, chunk_ns=tuple(chunks), end_ns=chunks[-1], output_tokens=tokens)
    assert ttft_ms(r) + math.fsum(itl_ms(r)) == pytest.approx(e2el_ms(r))
    assert len(itl_ms(r)) == len(chunks) - 1
    tpot = tpot_ms(r)
    if tokens < 2 or chunks[-1] == chunks[0]:  # nothing the client could time
        assert tpot is None
    else:
        assert tpot is not None
        assert ttft_ms(r) + tpot * (tokens - 1) == pytest.approx(e2el_ms(r))

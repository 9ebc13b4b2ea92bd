"""SLO verdicts: measured metrics held against checks, and the exact wording of a miss."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from pytest_llmperf.results.metrics import DISTRIBUTIONS, SCALARS, RunMetrics, summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.slo import Verdict, evaluate, failure_message, format_number
from pytest_llmperf.results.thresholds import Check, parse_check

CONTEXT = "64 requests, smollm2-135m on llamacpp (xllamacpp 2026.10.1)"
MS = 1_000_000


def metrics(
    distributions: Mapping[str, tuple[float, ...]] | None = None,
    scalars: Mapping[str, float] | None = None,
) -> RunMetrics:
    """A RunMetrics with every metric present: the given values, empty/zero elsewhere."""
    dists: dict[str, tuple[float, ...]] = {name: () for name in DISTRIBUTIONS}
    dists.update(distributions or {})
    scals: dict[str, float] = {name: 0.0 for name in SCALARS}
    scals.update(scalars or {})
    return RunMetrics(distributions=dists, scalars=scals, output_token_sources=("usage",))


def check(text: str) -> Check:
    return parse_check(text, "thresholds.toml:3")


def verdict(text: str, measured: float | None) -> Verdict:
    return Verdict(check(text), measured)


# --- evaluate ------------------------------------------------------------------------------


def test_evaluate_takes_the_statistic_each_check_names() -> None:
    run = metrics({"tpot_ms": (10.0, 20.0, 30.0, 40.0, 50.0)}, {"error_rate": 0.25})
    checks = [check("tpot_ms.p95 < 100"), check("tpot_ms.mean < 25"), check("tpot_ms.max <= 50"),
              check("error_rate <= 0.01")]
    verdicts = evaluate(run, checks)
    assert [v.check for v in verdicts] == checks
    assert [v.measured for v in verdicts] == pytest.approx([48.0, 30.0, 50.0, 0.25])
    assert [v.passed for v in verdicts] == [True, False, True, False]


def test_evaluate_of_no_checks_is_empty() -> None:
    assert evaluate(metrics(), []) == ()


def test_evaluate_on_an_empty_distribution_measures_nothing() -> None:
    (result,) = evaluate(metrics(), [check("ttft_ms.p95 < 1000")])
    assert result.measured is None
    assert not result.passed


def test_evaluate_on_summarized_records() -> None:
    """Ten requests, TTFT 200 ms then 9 more tokens 20 ms apart; one failed request."""
    def record(i: int) -> RequestRecord:
        send = i * 1_000 * MS
        chunks = tuple(send + 200 * MS + k * 20 * MS for k in range(10))
        return RequestRecord(i, send, chunks, chunks[-1], 10, TokenSource.USAGE, 20,
                             TokenSource.USAGE, "length")

    failed = RequestRecord(10, 10_000 * MS, error="HTTP 500")
    records = (*(record(i) for i in range(10)), failed)
    run = summarize(LoadRun(records, 0, 10_000 * MS, 1, 0))
    verdicts = evaluate(run, [check("tpot_ms.p95 < 100"), check("decode_tokens_per_s.mean >= 10"),
                              check("ttft_ms.p95 < 150"), check("error_rate <= 0.01")])
    assert [v.measured for v in verdicts] == pytest.approx([20.0, 50.0, 200.0, 1 / 11])
    assert [v.passed for v in verdicts] == [True, True, False, False]
    assert failure_message(verdicts, context="11 requests").splitlines() == [
        "ttft_ms.p95 = 200.0 ms, required < 150 ms (missed by 50.0 ms) -- 11 requests",
        "error_rate = 0.0909, required <= 0.01 (missed by 0.0809) -- 11 requests",
    ]


def test_every_request_failed_latency_is_not_measured_error_rate_is() -> None:
    records = tuple(RequestRecord(i, i * MS, error="connection refused") for i in range(4))
    run = summarize(LoadRun(records, 0, 4 * MS, 1, 0))
    tpot, rate = evaluate(run, [check("tpot_ms.p95 < 100"), check("error_rate <= 0.01")])
    assert tpot.measured is None
    assert not tpot.passed
    assert rate.measured == 1.0
    assert failure_message((tpot, rate), context="4 requests").splitlines() == [
        "tpot_ms.p95 not measured: no request completed, required < 100 ms -- 4 requests",
        "error_rate = 1, required <= 0.01 (missed by 0.99) -- 4 requests",
    ]


# --- Verdict -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "measured", "passed"),
    [
        ("tpot_ms.p95 < 100", 99.9, True),
        ("tpot_ms.p95 < 100", 100.0, False),
        ("tpot_ms.p95 <= 100", 100.0, True),
        ("tpot_ms.p95 <= 100", 100.1, False),
        ("decode_tokens_per_s.mean > 10", 10.0, False),
        ("decode_tokens_per_s.mean > 10", 10.1, True),
        ("decode_tokens_per_s.mean >= 10", 10.0, True),
        ("decode_tokens_per_s.mean >= 10", 9.99, False),
        ("tpot_ms.p95 < 100", None, False),
        ("decode_tokens_per_s.mean >= 10", None, False),
    ],
)
def test_passed(text: str, measured: float | None, passed: bool) -> None:
    assert verdict(text, measured).passed is passed


def test_describe_a_passing_verdict_has_no_miss() -> None:
    assert verdict("tpot_ms.p95 < 100", 42.0).describe() == (
        "tpot_ms.p95 = 42.0 ms, required < 100 ms"
    )


def test_describe_a_missed_upper_limit() -> None:
    assert verdict("tpot_ms.p95 < 100", 142.3).describe() == (
        "tpot_ms.p95 = 142.3 ms, required < 100 ms (missed by 42.3 ms)"
    )


def test_describe_a_missed_lower_limit_is_missed_by_limit_minus_measured() -> None:
    assert verdict("decode_tokens_per_s.mean >= 10", 8.25).describe() == (
        "decode_tokens_per_s.mean = 8.25 tok/s, required >= 10 tok/s (missed by 1.75 tok/s)"
    )


def test_describe_keeps_the_limit_as_written() -> None:
    assert verdict("ttft_ms.p99.9 < 1.5e3", 1600.0).describe() == (
        "ttft_ms.p99.9 = 1600.0 ms, required < 1.5e3 ms (missed by 100.0 ms)"
    )


def test_describe_not_measured() -> None:
    assert verdict("decode_tokens_per_s.mean >= 10", None).describe() == (
        "decode_tokens_per_s.mean not measured: no request completed, required >= 10 tok/s"
    )


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("tpot_ms.p95 < 1", "ms"),
        ("ttft_ms.p95 < 1", "ms"),
        ("decode_tokens_per_s.mean > 1", "tok/s"),
        ("output_token_throughput > 1", "tok/s"),
        ("request_throughput > 1", "req/s"),
        ("output_tokens.min >= 1", "tok"),
        ("duration_s < 1", "s"),
        ("error_rate <= 0.01", ""),
    ],
)
def test_unit_comes_from_the_metric(text: str, unit: str) -> None:
    assert verdict(text, 0.5).unit == unit


def test_error_rate_has_no_unit_in_the_message() -> None:
    assert verdict("error_rate <= 0.01", 0.0156).describe() == (
        "error_rate = 0.0156, required <= 0.01 (missed by 0.0056)"
    )


def test_throughput_unit_in_the_message() -> None:
    assert verdict("request_throughput >= 2", 1.5).describe() == (
        "request_throughput = 1.5 req/s, required >= 2 req/s (missed by 0.5 req/s)"
    )


# --- failure_message -----------------------------------------------------------------------


def test_failure_message_for_a_missed_p95_reads_exactly() -> None:
    run = metrics({"tpot_ms": (142.3,)})
    verdicts = evaluate(run, [check("tpot_ms.p95 < 100")])
    assert failure_message(verdicts, context=CONTEXT) == (
        "tpot_ms.p95 = 142.3 ms, required < 100 ms (missed by 42.3 ms) -- 64 requests, "
        "smollm2-135m on llamacpp (xllamacpp 2026.10.1)"
    )


def test_failure_message_p95_from_a_spread_distribution() -> None:
    # 21 values 100, 101, ..., 120: p95 is at rank 19, i.e. 119.
    run = metrics({"tpot_ms": tuple(float(v) for v in range(100, 121))})
    verdicts = evaluate(run, [check("tpot_ms.p95 < 100")])
    assert failure_message(verdicts, context=CONTEXT) == (
        f"tpot_ms.p95 = 119.0 ms, required < 100 ms (missed by 19.0 ms) -- {CONTEXT}"
    )


def test_failure_message_for_a_missed_decode_speed() -> None:
    run = metrics({"decode_tokens_per_s": (8.0, 8.5)})
    verdicts = evaluate(run, [check("decode_tokens_per_s.mean >= 10")])
    assert failure_message(verdicts, context=CONTEXT) == (
        "decode_tokens_per_s.mean = 8.25 tok/s, required >= 10 tok/s (missed by 1.75 tok/s) -- "
        + CONTEXT
    )


def test_passing_verdicts_produce_no_line() -> None:
    run = metrics({"tpot_ms": (20.0, 30.0), "decode_tokens_per_s": (50.0, 33.3)},
                  {"error_rate": 0.0})
    verdicts = evaluate(run, [check("tpot_ms.p95 < 100"), check("decode_tokens_per_s.mean >= 10"),
                              check("error_rate <= 0.01")])
    assert all(v.passed for v in verdicts)
    assert failure_message(verdicts, context=CONTEXT) == ""


def test_only_missed_verdicts_produce_lines_in_order() -> None:
    run = metrics(
        {"tpot_ms": (142.3,), "ttft_ms": (500.0,), "decode_tokens_per_s": (7.0,)},
        {"error_rate": 0.0},
    )
    verdicts = evaluate(run, [check("tpot_ms.p95 < 100"), check("ttft_ms.p95 < 1000"),
                              check("decode_tokens_per_s.mean >= 10"),
                              check("error_rate <= 0.01")])
    assert failure_message(verdicts, context="ctx").splitlines() == [
        "tpot_ms.p95 = 142.3 ms, required < 100 ms (missed by 42.3 ms) -- ctx",
        "decode_tokens_per_s.mean = 7 tok/s, required >= 10 tok/s (missed by 3 tok/s) -- ctx",
    ]


def test_not_measured_fails_with_its_own_line() -> None:
    verdicts = evaluate(metrics(), [check("tpot_ms.p95 < 100")])
    assert failure_message(verdicts, context=CONTEXT) == (
        f"tpot_ms.p95 not measured: no request completed, required < 100 ms -- {CONTEXT}"
    )


def test_where_line_follows_the_misses() -> None:
    verdicts = evaluate(metrics({"tpot_ms": (142.3,)}),
                        [check("tpot_ms.p95 < 100"), check("tpot_ms.p50 < 200")])
    message = failure_message(verdicts, context=CONTEXT, where="SLOs from thresholds.toml:3")
    assert message.splitlines() == [
        f"tpot_ms.p95 = 142.3 ms, required < 100 ms (missed by 42.3 ms) -- {CONTEXT}",
        "SLOs from thresholds.toml:3",
    ]


def test_where_line_is_left_out_when_everything_passed() -> None:
    verdicts = evaluate(metrics({"tpot_ms": (20.0,)}), [check("tpot_ms.p95 < 100")])
    assert failure_message(verdicts, context=CONTEXT, where="SLOs from thresholds.toml:3") == ""


def test_failure_message_of_no_verdicts_is_empty() -> None:
    assert failure_message([], context=CONTEXT, where="somewhere") == ""


def test_failure_message_accepts_a_generator() -> None:
    verdicts = evaluate(metrics({"tpot_ms": (142.3,)}), [check("tpot_ms.p95 < 100")])
    assert failure_message((v for v in verdicts), context="c").endswith("-- c")


# --- format_number -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (142.3, "142.3"),
        (142.34999, "142.3"),
        (42.30000000000001, "42.3"),
        (10.0, "10.0"),
        (1234.56, "1234.6"),
        (8.25, "8.25"),
        (1.75, "1.75"),
        (0.0156, "0.0156"),
        (0.01, "0.01"),
        (0.5, "0.5"),
        (7.0, "7"),
        (9.999, "10"),
        (0, "0"),
        (0.0, "0"),
        (-12.34, "-12.3"),
        (-0.25, "-0.25"),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


# --- resource metrics (telemetry) ------------------------------------------------------------

NO_GPU = "no NVIDIA GPU: NVML Shared Library Not Found"


def test_a_measured_resource_metric_is_held_like_any_other() -> None:
    run = metrics().with_resources({"gpu_memory_peak_mib": 71000.0, "server_rss_peak_mib": 900})
    over, under = evaluate(run, [check("gpu_memory_peak_mib < 70000"),
                                 check("server_rss_peak_mib < 8000")])
    assert (over.passed, over.state, over.measured) == (False, "fail", 71000.0)
    assert over.describe() == ("gpu_memory_peak_mib = 71000.0 MiB, required < 70000 MiB "
                               "(missed by 1000.0 MiB)")
    assert under.state == "pass"


def test_an_unmeasurable_gpu_metric_is_skipped_with_the_reason() -> None:
    (result,) = evaluate(metrics(), [check("gpu_memory_peak_mib < 70000")],
                         unmeasured={"gpu_memory_peak_mib": NO_GPU})
    assert (result.measured, result.skipped, result.passed, result.state) == \
        (None, True, True, "skip")
    assert result.describe() == (f"gpu_memory_peak_mib skipped: {NO_GPU}; "
                                 "required < 70000 MiB")
    assert failure_message([result], CONTEXT) == ""  # a skip fails nothing


def test_a_required_gpu_metric_fails_with_the_reason() -> None:
    (result,) = evaluate(metrics(), [check("energy_j_per_token < 0.5")],
                         unmeasured={"energy_j_per_token": NO_GPU},
                         required=["energy_j_per_token"])
    assert (result.skipped, result.passed, result.state) == (False, False, "fail")
    assert result.describe() == (f"energy_j_per_token not measured: {NO_GPU}, "
                                 "required < 0.5 J/tok")


def test_a_zero_reading_is_measured_not_absent() -> None:
    run = metrics().with_resources({"gpu_util_mean": 0.0})
    (result,) = evaluate(run, [check("gpu_util_mean >= 50")],
                         unmeasured={"gpu_util_mean": NO_GPU})
    assert (result.measured, result.skipped, result.state) == (0.0, False, "fail")


def test_a_latency_metric_is_never_skipped() -> None:
    (result,) = evaluate(metrics(), [check("ttft_ms.p95 < 1000")],
                         unmeasured={"ttft_ms": "whatever"})
    assert (result.skipped, result.state) == (False, "fail")


# --- percentiles the sample must support ---------------------------------------------------


def test_a_p95_met_on_32_requests_is_inconclusive_not_a_pass() -> None:
    values = tuple(10.0 + i * 0.1 for i in range(32))  # every value far below the limit
    (warned,) = evaluate(metrics({"tpot_ms": values}), [check("tpot_ms.p95 < 100")])
    assert (warned.state, warned.passed) == ("inconclusive", True)
    assert warned.describe() == (
        "tpot_ms.p95 = 12.9 ms, required < 100 ms: inconclusive, 32 requests are too few to "
        "bound p95 at 95 % confidence; about 59 requests would settle it (--llmperf-requests)")
    (failed,) = evaluate(metrics({"tpot_ms": values}), [check("tpot_ms.p95 < 100")],
                         inconclusive="fail")
    assert (failed.state, failed.passed) == ("inconclusive", False)
    assert failure_message([failed], CONTEXT).startswith("tpot_ms.p95 = 12.9 ms, required < 100")


def test_enough_requests_make_the_same_claim_a_pass() -> None:
    values = tuple(10.0 + i * 0.01 for i in range(59))
    (verdict_,) = evaluate(metrics({"tpot_ms": values}), [check("tpot_ms.p95 < 100")])
    assert verdict_.state == "pass"


def test_a_bound_on_the_wrong_side_says_how_many_requests_would_do() -> None:
    # 8 of 200 requests (4 %) above the limit: p95 meets it, its 95 % upper bound does not.
    values = tuple([50.0] * 192 + [150.0] * 8)
    (verdict_,) = evaluate(metrics({"tpot_ms": values}), [check("tpot_ms.p95 < 100")])
    assert verdict_.state == "inconclusive"
    assert "its 95 % confidence bound is 150.0, on the wrong side of the limit" in \
        verdict_.describe()
    assert "requests would settle it" in verdict_.describe()


def test_a_lower_limit_uses_the_lower_bound_and_a_miss_is_a_miss_at_any_size() -> None:
    speeds = tuple(50.0 + i for i in range(10))
    (low,) = evaluate(metrics({"decode_tokens_per_s": speeds}),
                      [check("decode_tokens_per_s.p10 >= 10")])
    assert low.state == "inconclusive"  # 10 requests cannot bound a p10 from below
    (miss,) = evaluate(metrics({"tpot_ms": (150.0,) * 5}), [check("tpot_ms.p95 < 100")])
    assert (miss.state, miss.passed) == ("fail", False)
    (mean,) = evaluate(metrics({"tpot_ms": (10.0,) * 5}), [check("tpot_ms.mean < 100")])
    assert mean.state == "pass"  # means and extremes are not judged for support

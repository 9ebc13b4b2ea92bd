"""Every family of a metrics endpoint over a window (results.server_families,
observe.family_capture) and SLOs on them (``server[NAME].STAT``), against pages written here
in the Prometheus text format with values chosen so that every figure is known."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from pytest_llmperf.observe.family_capture import FamilyCapture
from pytest_llmperf.observe.server_metrics import ServerMetricsProbe, engine_figures
from pytest_llmperf.report.families_markdown import families_markdown
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.judge import judge_window
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.server_families import (
    FamilyWindow,
    ScrapedFamilies,
    combine,
    histogram_quantile,
    server_value,
)
from pytest_llmperf.results.thresholds import ThresholdError, parse_check, parse_gate
from pytest_llmperf.results.window import WindowResult

BOUNDS = (0.1, 0.5, 1.0, 2.5)


def page(*, requests: int, queue: tuple[int, int, int, int, int], queue_sum: float,
         running: float, kv: tuple[float, float], latency: tuple[float, int],
         late: int | None = None) -> str:
    """A vLLM-shaped page: a counter, a histogram (cumulative buckets), a gauge with two label
    sets, a ratio gauge with two, a summary; ``late`` adds a counter created mid-window."""
    lines = [
        "# HELP vllm:request_success_total Finished requests.",
        "# TYPE vllm:request_success_total counter",
        f'vllm:request_success_total{{finished_reason="stop"}} {requests - 1}',
        'vllm:request_success_total{finished_reason="length"} 1',
        "# TYPE vllm:request_queue_time_seconds histogram",
    ]
    cumulative = 0
    for bound, count in zip((*BOUNDS, math.inf), queue, strict=True):
        cumulative += count
        le = "+Inf" if math.isinf(bound) else repr(bound)
        lines.append(f'vllm:request_queue_time_seconds_bucket{{le="{le}"}} {cumulative}')
    lines += [f"vllm:request_queue_time_seconds_sum {queue_sum}",
              f"vllm:request_queue_time_seconds_count {cumulative}",
              "# TYPE vllm:num_requests_running gauge",
              f'vllm:num_requests_running{{engine="0"}} {running / 2}',
              f'vllm:num_requests_running{{engine="1"}} {running / 2}',
              "# TYPE vllm:kv_cache_usage_perc gauge",
              f'vllm:kv_cache_usage_perc{{engine="0"}} {kv[0]}',
              f'vllm:kv_cache_usage_perc{{engine="1"}} {kv[1]}',
              "# TYPE rpc_latency_seconds summary",
              'rpc_latency_seconds{quantile="0.5"} 9.0',
              f"rpc_latency_seconds_sum {latency[0]}",
              f"rpc_latency_seconds_count {latency[1]}"]
    if late is not None:
        lines += ["# TYPE vllm:num_preemptions_total counter", f"vllm:num_preemptions_total {late}"]
    return "\n".join(lines) + "\n"


BEFORE = page(requests=100, queue=(50, 30, 15, 4, 1), queue_sum=40.0, running=0, kv=(0.0, 0.0),
              latency=(10.0, 5))
# Over the window: 20 requests, queue times 10 x <=0.1, 6 x 0.1-0.5, 4 x 0.5-1 (sum 5.5 s),
# 4 running at the end, KV caches at 30 % and 50 %; 3 RPCs of 2 s each; 2 preemptions by a
# counter that did not exist before.
AFTER = page(requests=120, queue=(60, 36, 19, 4, 1), queue_sum=45.5, running=4, kv=(0.3, 0.5),
             latency=(16.0, 8), late=2)


def scripted(*texts: str):  # type: ignore[no-untyped-def]
    calls = iter(range(10**6))
    return lambda url, timeout_s: texts[min(next(calls), len(texts) - 1)]


def captured(*texts: str) -> ScrapedFamilies:
    times = iter([100.0, 110.0])
    capture = FamilyCapture("http://h:8000/metrics", poll_interval_s=3600,
                            fetch=scripted(*texts), clock=lambda: next(times))
    capture.window_started()
    capture.window_ended()
    return capture.result()


def test_each_kind_of_family_over_the_window() -> None:
    scraped = captured(BEFORE, AFTER)
    assert scraped.seconds == 10.0 and not scraped.notes
    success = scraped.find("vllm:request_success_total")
    assert success is not None and success.kind == "counter"
    assert success.value("delta", 10.0) == 20 and success.value("rate", 10.0) == 2.0
    queue = scraped.find("vllm:request_queue_time_seconds")
    assert queue is not None and queue.kind == "histogram"
    assert queue.value("count", 10.0) == 20 and queue.value("mean", 10.0) == pytest.approx(0.275)
    # The window's own buckets: 10 in (0, 0.1], 6 in (0.1, 0.5], 4 in (0.5, 1].
    assert queue.buckets == ((0.1, 10), (0.5, 16), (1.0, 20), (2.5, 20), (math.inf, 20))
    assert queue.value("median", 10.0) == pytest.approx(0.1)  # rank 10: the first bucket's top
    assert queue.value("p95", 10.0) == pytest.approx(0.5 + 0.5 * 3 / 4)  # rank 19 of (16, 20]
    running = scraped.find("vllm:num_requests_running")
    assert running is not None and (running.peak, running.low) == (4, 0)  # label sets summed
    kv = scraped.find("vllm:kv_cache_usage_perc")
    assert kv is not None and kv.peak == pytest.approx(0.4)  # a ratio: averaged, not summed
    rpc = scraped.find("rpc_latency_seconds")
    assert rpc is not None and rpc.value("mean", 10.0) == pytest.approx(2.0)
    assert rpc.value("p50", 10.0) is None  # a summary's quantiles span the server's life
    # Created during the window: counted from zero, found with or without _total.
    assert scraped.find("vllm:num_preemptions") == scraped.find("vllm:num_preemptions_total")
    assert server_value([scraped], "vllm:num_preemptions_total", "delta") == (2, None)


def test_a_counter_that_went_down_has_no_delta_and_says_so() -> None:
    scraped = captured(AFTER, BEFORE)
    assert scraped.find("vllm:request_success_total") == FamilyWindow("counter")
    assert scraped.find("vllm:request_queue_time_seconds") == FamilyWindow("histogram")
    assert any("went down" in note and "vllm:request_success" in note
               for note in scraped.notes)
    value, why = server_value([scraped], "vllm:request_success_total", "delta")
    assert value is None and why is not None and "went down" in why


def test_a_failed_scrape_leaves_no_family_and_a_note() -> None:
    def broken(url: str, timeout_s: float) -> str:
        raise ConnectionRefusedError("refused")

    capture = FamilyCapture("http://h/metrics", poll_interval_s=3600, fetch=broken)
    capture.window_started()
    capture.window_ended()
    scraped = capture.result()
    assert scraped.families == {} and "refused" in scraped.notes[0]
    value, why = server_value([scraped], "x", "delta")
    assert value is None and why is not None and "no family was read" in why


def test_histogram_quantile_reads_buckets_as_prometheus_does() -> None:
    buckets = ((1.0, 2.0), (2.0, 6.0), (4.0, 8.0), (math.inf, 10.0))
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.5)  # rank 1 of (0, 1]
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.75)  # rank 5 of (2, 6]
    assert histogram_quantile(0.99, buckets) == 4.0  # in +Inf: the largest finite bound
    assert histogram_quantile(0.5, ((1.0, 0.0), (math.inf, 0.0))) is None  # nothing observed
    assert histogram_quantile(0.5, ((1.0, 3.0),)) is None  # no +Inf bucket: not a histogram


def test_urls_combine_counters_and_histograms_by_sum_and_gauges_by_the_largest() -> None:
    one, two = captured(BEFORE, AFTER), captured(BEFORE, AFTER)
    two = dataclasses.replace(two, url="http://h2:8000/metrics")
    both = combine([one, two])
    assert both is not None
    assert server_value([one, two], "vllm:request_success_total", "delta") == (40, None)
    assert server_value([one, two], "vllm:request_queue_time_seconds", "p95") == (
        pytest.approx(0.875), None)
    assert server_value([one, two], "vllm:num_requests_running", "peak") == (4, None)


def test_a_missing_family_names_the_families_there_and_the_closest() -> None:
    scraped = captured(BEFORE, AFTER)
    value, why = server_value([scraped], "vllm:num_requests_runing", "peak")
    assert value is None and why is not None
    assert "no family 'vllm:num_requests_runing' at http://h:8000/metrics" in why
    assert "did you mean 'vllm:num_requests_running'?" in why
    assert "vllm:kv_cache_usage_perc" in why and "rpc_latency_seconds" in why


def test_a_statistic_of_another_kind_says_which_kind_the_family_is() -> None:
    scraped = captured(BEFORE, AFTER)
    _, why = server_value([scraped], "vllm:num_requests_running", "delta")
    assert why == "vllm:num_requests_running is a gauge: its statistics are peak, mean, min"
    _, why = server_value([scraped], "vllm:request_success_total", "p95")
    assert why is not None and "is a counter" in why


def test_families_survive_the_result_store() -> None:
    scraped = captured(BEFORE, AFTER)
    again = ScrapedFamilies.from_json(Fields(json.loads(json.dumps(scraped.to_json()))))
    assert again == scraped


def test_the_engine_figures_come_from_the_same_capture() -> None:
    from pytest_llmperf.engines.vllm import VLLMBackend

    figures = engine_figures(VLLMBackend.metric_names, captured(BEFORE, AFTER))
    assert figures["server_queue_ms_mean"] == pytest.approx(275.0)
    assert figures["preemptions"] == 2
    assert figures["requests_running_peak"] == 4
    assert figures["kv_cache_usage_peak"] == pytest.approx(0.4)


def test_speculative_decoding_from_counters_and_from_gauges() -> None:
    from pytest_llmperf.engines.sglang import SGLangBackend
    from pytest_llmperf.engines.vllm import VLLMBackend

    def counters(drafts: int, proposed: int, accepted: int) -> str:
        return "".join(f"# TYPE vllm:spec_decode_num_{name} counter\n"
                       f"vllm:spec_decode_num_{name}_total {value}\n"
                       for name, value in (("drafts", drafts), ("draft_tokens", proposed),
                                           ("accepted_tokens", accepted)))

    # 100 steps of 3 draft tokens, 180 accepted: 60 %, 1 + 1.8 tokens a step.
    figures = engine_figures(VLLMBackend.metric_names,
                             captured(counters(0, 0, 0), counters(100, 300, 180)))
    assert figures["spec_acceptance_rate"] == pytest.approx(0.6)
    assert figures["spec_acceptance_length"] == pytest.approx(2.8)
    sglang = ("# TYPE sglang:spec_accept_rate gauge\nsglang:spec_accept_rate {}\n"
              "# TYPE sglang:spec_accept_length gauge\nsglang:spec_accept_length {}\n")
    figures = engine_figures(SGLangBackend.metric_names,
                             captured(sglang.format(0.5, 2.5), sglang.format(0.7, 3.5)))
    assert figures["spec_acceptance_rate"] == pytest.approx(0.6)
    assert figures["spec_acceptance_length"] == pytest.approx(3.0)


def test_a_probe_over_two_urls_sums_their_engine_figures() -> None:
    probe = ServerMetricsProbe(["http://a/metrics", "http://b/metrics"], None,
                               poll_interval_s=3600, fetch=lambda url, t: (
                                   BEFORE if probe_calls.setdefault(url, 0) == 0 else AFTER))
    probe_calls: dict[str, int] = {}
    probe.window_started()
    probe_calls.update({"http://a/metrics": 1, "http://b/metrics": 1})
    probe.window_ended()
    assert [one.url for one in probe.families()] == ["http://a/metrics", "http://b/metrics"]
    assert server_value(probe.families(), "vllm:request_success_total", "delta") == (40, None)
    assert probe.result() == {}  # no engine names: only the families


# --- SLOs ----------------------------------------------------------------------------------

MS = 1_000_000
SERVED = ServedInfo("openai", "m", "vLLM at http://h:8000/v1")


def window(scraped: tuple[ScrapedFamilies, ...]) -> WindowResult:
    records = tuple(RequestRecord(i, i * 1000 * MS, (i * 1000 * MS + 200 * MS,
                                                     i * 1000 * MS + 300 * MS),
                                  i * 1000 * MS + 300 * MS, 2) for i in range(4))
    return WindowResult(SERVED, LoadShape.closed(1), 2, LoadRun(records, 0, 3300 * MS, 1, 0),
                        server_families=scraped)


def test_server_slos_pass_and_fail_on_the_window_s_families() -> None:
    checks = [parse_check(text, "thresholds.toml:3") for text in (
        "server[vllm:num_preemptions_total].delta <= 0",
        "server[vllm:kv_cache_usage_perc].peak < 0.95",
        "server[vllm:request_queue_time_seconds].p95 < 0.5",
        "server[vllm:request_success].rate >= 1")]
    verdicts = judge_window(window((captured(BEFORE, AFTER),)), checks)
    assert [(v.check.key, v.state) for v in verdicts] == [
        ("server[vllm:num_preemptions_total].delta", "fail"),
        ("server[vllm:kv_cache_usage_perc].peak", "pass"),
        ("server[vllm:request_queue_time_seconds].p95", "fail"),
        ("server[vllm:request_success].rate", "pass")]
    assert verdicts[0].describe() == ("server[vllm:num_preemptions_total].delta = 2, required "
                                      "<= 0 (missed by 2)")


def test_a_server_slo_on_a_family_that_is_not_there_fails_naming_the_families() -> None:
    verdict, = judge_window(window((captured(BEFORE, AFTER),)),
                            [parse_check("server[vllm:num_preemptions_totl].delta <= 0", "t")])
    assert verdict.state == "fail" and verdict.measured is None
    assert "did you mean 'vllm:num_preemptions'?" in verdict.describe()
    verdict, = judge_window(window(()), [parse_check("server[x].delta <= 0", "t")])
    assert verdict.state == "fail"
    assert "give --llmperf-metrics-url" in verdict.describe()


def test_server_slos_are_read_and_refused_with_where() -> None:
    check = parse_check("server[vllm:num_preemptions_total].delta <= 0", "thresholds.toml:4")
    assert (check.metric, check.statistic) == ("server[vllm:num_preemptions_total]", "delta")
    assert parse_check("server[h].p99.9 < 1", "t").statistic == "p99.9"
    with pytest.raises(ThresholdError, match=r"thresholds.toml:5: .*needs a statistic"):
        parse_check("server[vllm:x] < 1", "thresholds.toml:5")
    with pytest.raises(ThresholdError, match=r"t: .*unknown statistic 'peek'"):
        parse_check("server[vllm:x].peek < 1", "t")
    with pytest.raises(ThresholdError, match="cannot be compared with a baseline"):
        parse_gate("server[vllm:x].delta:10%", "--llmperf-compare-fail")


def test_the_report_shows_the_families_that_moved() -> None:
    text = "\n".join(families_markdown([captured(BEFORE, AFTER)]))
    assert ("Server metrics at http://h:8000/metrics: 6 of 6 families moved over the window "
            "(10.0 s between the scrapes)") in text
    assert re.search(r"\| `vllm:num_preemptions` +\| counter +\| delta 2, rate 0.2 +\|",
                     text)
    assert re.search(r"\| `vllm:request_queue_time_seconds` +\| histogram +\| count 20, "
                     r"mean 0.275, p50 0.1, p95 0.875 +\|", text)


def test_the_engine_s_own_figures_are_slos_under_their_junit_names() -> None:
    checks = [parse_check("server.spec_acceptance_rate >= 0.5", "t"),
              parse_check("server.spec_acceptance_rate >= 0.7", "t"),
              parse_check("server.preemptions <= 0", "t")]
    measured = dataclasses.replace(window(()), server_metrics={"spec_acceptance_rate": 0.6})
    verdicts = judge_window(measured, checks)
    assert [(v.measured, v.state) for v in verdicts] == [(0.6, "pass"), (0.6, "fail"),
                                                        (None, "fail")]
    assert "the engine's metrics did not give it" in verdicts[2].describe()
    verdict, = judge_window(window(()), checks[:1])  # no metrics endpoint at all
    assert verdict.state == "fail" and "has no metrics endpoint" in verdict.describe()
    with pytest.raises(ThresholdError, match="cannot be compared with a baseline"):
        parse_gate("server.preemptions:10%", "--llmperf-compare-fail")

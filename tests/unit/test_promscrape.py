"""The server-metrics probe and its fetch, against hand-written expositions.

The parser is tested in test_exposition.py; the same probe against the real llama.cpp engine
is in tests/integration/test_server_metrics.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import requests

from pytest_llmperf.engines.llamacpp import LlamaCppBackend
from pytest_llmperf.observe.exposition import parse_exposition
from pytest_llmperf.observe.server_metrics import (
    ServerMetricNames,
    ServerMetricsProbe,
    fetch_text,
)
from tests.fakes.metrics_page import serving_page

# --- the probe -----------------------------------------------------------------------------

VLLM_NAMES = ServerMetricNames(
    ttft_seconds=("vllm:time_to_first_token_seconds",),
    tpot_seconds=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    e2e_seconds=("vllm:e2e_request_latency_seconds",),
    queue_seconds=("vllm:request_queue_time_seconds",),
    prompt_tokens=("vllm:prompt_tokens_total",),
    generation_tokens=("vllm:generation_tokens_total",),
    preemptions=("vllm:num_preemptions_total",),
    prefix_cache_hits=("vllm:prefix_cache_hits_total",),
    prefix_cache_queries=("vllm:prefix_cache_queries_total",),
    kv_cache_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    requests_running=("vllm:num_requests_running",),
    requests_waiting=("vllm:num_requests_waiting",),
)

LLAMACPP_NAMES = LlamaCppBackend.metric_names  # what the llama.cpp adapter reads
assert LLAMACPP_NAMES is not None


def vllm_text(*, ttft: tuple[float, int], tpot: tuple[float, int], prompt: int, gen: int,
              hits: int, queries: int, running: float = 0, kv: float = 0.0) -> str:
    """A vLLM-like exposition: two engines (label sets), each holding half of every number."""
    lines = ["# TYPE vllm:time_to_first_token_seconds histogram"]
    for engine in ("0", "1"):
        labels = f'engine="{engine}",model_name="m"'
        lines += [
            f'vllm:time_to_first_token_seconds_bucket{{{labels},le="+Inf"}} {ttft[1] / 2}',
            f"vllm:time_to_first_token_seconds_sum{{{labels}}} {ttft[0] / 2}",
            f"vllm:time_to_first_token_seconds_count{{{labels}}} {ttft[1] / 2}",
            f"vllm:inter_token_latency_seconds_sum{{{labels}}} {tpot[0] / 2}",
            f"vllm:inter_token_latency_seconds_count{{{labels}}} {tpot[1] / 2}",
            f"vllm:prompt_tokens_total{{{labels}}} {prompt / 2}",
            f"vllm:generation_tokens_total{{{labels}}} {gen / 2}",
            f"vllm:prefix_cache_hits_total{{{labels}}} {hits / 2}",
            f"vllm:prefix_cache_queries_total{{{labels}}} {queries / 2}",
            f"vllm:num_preemptions_total{{{labels}}} 0",
            f"vllm:num_requests_running{{{labels}}} {running / 2}",
            f"vllm:kv_cache_usage_perc{{{labels}}} {kv}",
        ]
    return "\n".join(lines) + "\n"


def scripted(texts: list[str]) -> Callable[[str, float], str]:
    """A fetch that answers each call with the next text (the last one repeats)."""
    calls = iter(range(10**6))

    def fetch(url: str, timeout_s: float) -> str:
        return texts[min(next(calls), len(texts) - 1)]

    return fetch


def run_window(probe: ServerMetricsProbe) -> dict[str, float]:
    probe.window_started()
    probe.window_ended()
    return probe.result()


def test_histogram_means_and_counter_deltas_over_the_window() -> None:
    before = vllm_text(ttft=(10.0, 100), tpot=(5.0, 1000), prompt=5000, gen=9000,
                       hits=100, queries=1000)
    after = vllm_text(ttft=(10.0 + 1.2, 100 + 8), tpot=(5.0 + 1.5, 1000 + 100),
                      prompt=5000 + 800, gen=9000 + 108, hits=100 + 200, queries=1000 + 800)
    probe = ServerMetricsProbe(["http://x/metrics"], VLLM_NAMES, poll_interval_s=3600,
                               fetch=scripted([before, after]))
    result = run_window(probe)
    assert result["server_ttft_ms_mean"] == pytest.approx(150.0)  # 1.2 s / 8 requests
    assert result["server_tpot_ms_mean"] == pytest.approx(15.0)  # 1.5 s / 100 tokens
    assert result["prompt_tokens"] == 800
    assert result["generation_tokens"] == 108
    assert result["prefix_cache_hit_rate"] == pytest.approx(0.25)
    assert result["preemptions"] == 0  # offered and zero is zero
    # Not offered by this engine (or no histogram in the text): absent, not zero.
    assert "server_e2e_ms_mean" not in result
    assert "server_queue_ms_mean" not in result
    assert "server_decode_ms_per_token" not in result
    json.dumps(result, allow_nan=False)


def test_llamacpp_decode_and_prefill_time_per_token() -> None:
    def text(prompt: int, prompt_s: float, gen: int, gen_s: float) -> str:
        return (f"llamacpp:prompt_tokens_total {prompt}\nllamacpp:prompt_seconds_total {prompt_s}\n"
                f"llamacpp:tokens_predicted_total {gen}\n"
                f"llamacpp:tokens_predicted_seconds_total {gen_s}\n"
                "llamacpp:requests_processing 0\n")

    probe = ServerMetricsProbe(["http://x/metrics"], LLAMACPP_NAMES, poll_interval_s=3600,
                               fetch=scripted([text(40, 1.0, 64, 2.0), text(240, 1.5, 320, 7.12)]))
    result = run_window(probe)
    assert result["generation_tokens"] == 256
    assert result["prompt_tokens"] == 200
    assert result["server_decode_ms_per_token"] == pytest.approx(20.0)  # 5.12 s / 256
    assert result["server_prefill_ms_per_token"] == pytest.approx(2.5)  # 0.5 s / 200
    assert "server_ttft_ms_mean" not in result
    assert "kv_cache_usage_peak" not in result  # this llama.cpp does not export it


def test_nothing_to_divide_by_gives_no_mean() -> None:
    same = vllm_text(ttft=(1.0, 10), tpot=(1.0, 10), prompt=1, gen=1, hits=0, queries=0)
    result = run_window(ServerMetricsProbe(["http://x/metrics"], VLLM_NAMES, poll_interval_s=3600,
                                           fetch=scripted([same, same])))
    assert "server_ttft_ms_mean" not in result
    assert "prefix_cache_hit_rate" not in result
    assert result["generation_tokens"] == 0


def test_a_counter_that_went_down_gives_no_delta_and_a_note() -> None:
    probe = ServerMetricsProbe(["http://x/metrics"], LLAMACPP_NAMES, poll_interval_s=3600,
                               fetch=scripted(["llamacpp:tokens_predicted_total 500\n",
                                               "llamacpp:tokens_predicted_total 20\n"]))
    assert "generation_tokens" not in run_window(probe)
    assert any("went down" in note for note in probe.notes)


def test_failed_scrapes_are_notes_not_exceptions() -> None:
    def broken(url: str, timeout_s: float) -> str:
        raise ConnectionRefusedError("connection refused")

    probe = ServerMetricsProbe(["http://x/metrics"], VLLM_NAMES, poll_interval_s=3600,
                               fetch=broken)
    assert run_window(probe) == {}
    assert len(probe.notes) >= 2
    assert "before the window failed: ConnectionRefusedError" in probe.notes[0]


def test_gauges_are_polled_during_the_window_for_peak_and_mean() -> None:
    calls: list[int] = []
    enough = threading.Event()
    running = [0, 3, 5, 2, 2]  # call 0 is the scrape before the window

    def fetch(url: str, timeout_s: float) -> str:
        n = len(calls)
        calls.append(n)
        if n >= 4:
            enough.set()
        return vllm_text(ttft=(0, 0), tpot=(0, 0), prompt=0, gen=n, hits=0, queries=0,
                         running=running[min(n, len(running) - 1)], kv=0.25)

    probe = ServerMetricsProbe(["http://x/metrics"], VLLM_NAMES, poll_interval_s=0.001,
                               fetch=fetch)
    probe.window_started()
    assert enough.wait(30)
    probe.window_ended()
    result = probe.result()
    assert result["requests_running_peak"] == 5  # summed over the two engines
    assert result["kv_cache_usage_peak"] == 0.25  # a ratio: averaged over engines, not summed
    assert result["kv_cache_usage_mean"] == pytest.approx(0.25)
    assert "requests_waiting_peak" not in result  # not in the text: never polled
    assert result["generation_tokens"] > 0


def test_a_window_shorter_than_the_poll_interval_reads_its_gauges_at_both_ends() -> None:
    before = vllm_text(ttft=(0, 0), tpot=(0, 0), prompt=0, gen=0, hits=0, queries=0, running=1)
    after = vllm_text(ttft=(0, 0), tpot=(0, 0), prompt=0, gen=0, hits=0, queries=0, running=4)
    probe = ServerMetricsProbe(["http://x/metrics"], VLLM_NAMES, poll_interval_s=3600,
                               fetch=scripted([before, after]))
    result = run_window(probe)
    # No poll fell inside the window: the scrapes before and after are its two readings.
    assert result["requests_running_peak"] == 4
    assert not probe.notes


def test_non_finite_values_never_reach_the_result() -> None:
    before = "h_sum 1\nh_count 1\n"
    after = "h_sum NaN\nh_count 2\nx_sum +Inf\nx_count 2\n"
    names = ServerMetricNames(ttft_seconds=("h",), e2e_seconds=("x",))
    result = run_window(ServerMetricsProbe(["u"], names, poll_interval_s=3600,
                                           fetch=scripted([before, after])))
    assert result == {}


# --- over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def metrics_server() -> Iterator[str]:
    # A UTF-8 label value, and no charset named, as llama.cpp answers.
    with serving_page(lambda read: 'llamacpp:tokens_predicted_total{model="café"} 7\n') as (
            url, _):
        yield url


def test_fetch_text_reads_a_metrics_endpoint(metrics_server: str) -> None:
    parsed = parse_exposition(fetch_text(metrics_server, 5.0))
    assert parsed.counter(["llamacpp:tokens_predicted"]) == 7
    assert parsed.samples[0].labels == {"model": "café"}  # read as UTF-8, not Latin-1


def test_fetch_text_raises_for_an_error_status(metrics_server: str) -> None:
    with pytest.raises(requests.HTTPError, match="404"):
        fetch_text(metrics_server.replace("/metrics", "/nope"), 5.0)
    probe = ServerMetricsProbe([metrics_server.replace("/metrics", "/nope")], LLAMACPP_NAMES,
                               poll_interval_s=3600)
    assert run_window(probe) == {}
    assert "before the window failed: HTTPError: 404" in probe.notes[0]


def test_an_unreachable_endpoint_costs_only_the_server_numbers() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = ServerMetricsProbe([f"http://127.0.0.1:{port}/metrics"], LLAMACPP_NAMES,
                               timeout_s=2.0, poll_interval_s=3600)
    assert run_window(probe) == {}
    assert "failed" in probe.notes[0]


def test_gauge_polls_parse_only_the_gauges_lines() -> None:
    # Polls run inside the window, in the client's process: a 3000-line page must not be
    # parsed whole twice a second (55 ms of parse per poll on a vLLM-like page, 0.7 ms so).
    from pytest_llmperf.observe.family_capture import lines_of as _lines_of

    page = ('# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{m="a"} 3\n'
            'vllm:e2e_request_latency_seconds_bucket{le="1"} 5\n{"odd.name"} 1\n')
    kept = _lines_of(page, ("vllm:num_requests_running",))
    assert kept.splitlines() == ['vllm:num_requests_running{m="a"} 3', '{"odd.name"} 1']

"""The engine's own Prometheus numbers against the client's, on the real embedded llama.cpp.

The probe scrapes after warm-up, so llama.cpp's token counters must move by exactly what the
measured requests' usage blocks say, and its decode time per token must tell the same story
as the client's TPOT.
"""

from __future__ import annotations

import math

import pytest

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.window import WindowResult

pytestmark = pytest.mark.integration

MAX_TOKENS = 16  # short answers: the shared CPU is slow


@pytest.fixture(scope="module")
def result(smollm2_served: ServedModel) -> WindowResult:
    assert smollm2_served.metrics_url and smollm2_served.metric_names
    # Warm-up requests run before the first scrape; two users make the counters sum requests
    # that overlap.
    return run_load(smollm2_served, BuiltinPrompts(seed=21), users=2, requests=6, warmup=2,
                    max_tokens=MAX_TOKENS)


def test_token_counters_move_by_exactly_the_measured_requests(result: WindowResult) -> None:
    records = result.run.records
    assert all(r.ok for r in records), [r.error for r in records]
    server = result.server_metrics
    assert server is not None, result.server_notes
    assert server["generation_tokens"] == sum(r.output_tokens for r in records)
    # Prompt caching is off, so every prompt token is processed (llama.cpp's counter leaves
    # out cached ones).
    assert server["prompt_tokens"] == sum(r.input_tokens or 0 for r in records)
    assert not result.server_notes, result.server_notes


def test_server_decode_time_agrees_with_client_tpot(result: WindowResult) -> None:
    server = result.server_metrics
    assert server is not None, result.server_notes
    client_tpot = result.metrics.value("tpot_ms", "mean")
    assert client_tpot is not None
    decode = server["server_decode_ms_per_token"]
    print(f"client TPOT mean {client_tpot:.2f} ms, llama.cpp decode time per token "
          f"{decode:.2f} ms, ratio {client_tpot / decode:.3f}; prefill "
          f"{server.get('server_prefill_ms_per_token', math.nan):.2f} ms/token; "
          f"window {result.run.duration_s:.1f} s; server metrics {dict(server)}")
    # Generous: llama.cpp divides by all generated tokens (the first one included) and the
    # shared CPU is noisy; a unit or counting mistake would be off by 1000x or 2x+.
    assert 0.5 < client_tpot / decode < 2.0
    assert server["server_prefill_ms_per_token"] > 0


def test_gauges_and_absent_metrics(result: WindowResult) -> None:
    server = result.server_metrics
    assert server is not None
    assert all(math.isfinite(value) for value in server.values())
    # llama.cpp has no TTFT/TPOT/E2E histograms: absent, not zero.
    for absent in ("server_ttft_ms_mean", "server_tpot_ms_mean", "server_e2e_ms_mean"):
        assert absent not in server
    if "requests_running_peak" in server:  # only when a poll fell inside the window
        assert 0 <= server["requests_running_peak"] <= 2

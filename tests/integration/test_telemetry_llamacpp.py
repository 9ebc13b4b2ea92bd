"""Telemetry of a real server process tree: embedded llama.cpp serving SmolLM2 on CPU.

The engine runs in its own process (launched by the backend); the observer must measure that
tree, not the test process that drives the load.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.observe.telemetry import Telemetry
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.report.charts import write_timeline_png
from pytest_llmperf.results.resources import Resources

pytestmark = pytest.mark.integration

MAX_TOKENS = 16  # short answers: the shared CPU is slow


@pytest.fixture(scope="module")
def figures(smollm2_served: ServedModel) -> Resources:
    with Telemetry.for_served(smollm2_served, interval_s=0.2) as telemetry:
        telemetry.baseline(samples=2, interval_s=0.1)
        result = run_load(smollm2_served, BuiltinPrompts(seed=31), users=2, requests=4, warmup=1,
                          max_tokens=MAX_TOKENS, observers=[telemetry])
        assert all(r.ok for r in result.run.records), [r.error for r in result.run.records]
        tokens = sum(r.output_tokens for r in result.run.records)
        return telemetry.result(output_tokens=tokens)


def test_the_server_tree_is_measured_not_the_test_process(smollm2_served: ServedModel,
                                                         figures: Resources) -> None:
    assert smollm2_served.server_pid is not None
    assert figures.server.pid == smollm2_served.server_pid != os.getpid()
    assert figures.server.scope == "launched server"
    assert figures.error is None, figures.error


def test_server_cpu_and_memory(figures: Resources) -> None:
    metrics = figures.metrics
    print(dataclasses.replace(figures, timeline=None))
    assert metrics["server_cpu_mean_pct"] > 0  # decoding on CPU keeps the engine busy
    assert metrics["server_cpu_peak_pct"] >= metrics["server_cpu_mean_pct"]
    assert metrics["server_rss_peak_mib"] > 50  # the 98 MB GGUF is mapped and resident
    assert metrics["server_rss_peak_mib"] >= metrics["server_rss_mean_mib"] > 0
    assert 0 < metrics["system_cpu_mean_pct"] <= 100
    assert metrics["system_memory_peak_mib"] > 0
    assert figures.system.memory_limit_mib is not None and figures.system.memory_limit_mib > 0
    assert figures.samples >= 2 and figures.duration_s > 0
    assert figures.idle is not None  # the idle readings before the window, kept beside it


def test_gpu_figures_or_the_reason_there_are_none(figures: Resources) -> None:
    if figures.gpu_unavailable_reason is not None:
        assert figures.gpu_unavailable_reason
        assert "gpu_util_mean" not in figures.metrics
    else:  # a GPU host: the embedded engine runs on CPU, but the GPUs are still read
        assert "gpu_memory_peak_mib" in figures.metrics


def test_timeline_png(figures: Resources, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert write_timeline_png(figures, tmp_path / "timeline.png") is not None

"""``--llmperf-metrics-url`` on a server the plugin attached to: the real embedded llama.cpp,
started by this test process, measured by a pytest run of its own with ``--backend openai``.

The engine's own figures must reach the report (llama.cpp's decode time per token beside the
client's TPOT), every family its /metrics exposes must be captured over the window, and SLOs
on them must pass and fail as the counters say: llama.cpp's generated-token counter moves by
exactly the tokens the measured requests' usage blocks counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.results.server_families import server_value
from pytest_llmperf.store.documents import load_run

pytestmark = pytest.mark.integration

TEST = '''
from pytest_llmperf import LoadFunction, SLOChecker


def test_engine_seen_from_its_metrics(llmperf_load: LoadFunction,
                                      llmperf_slo: SLOChecker) -> None:
    llmperf_slo.check(llmperf_load(users=2, requests=4, max_tokens=8))


def test_held_to_a_server_slo_it_misses(llmperf_load: LoadFunction,
                                        llmperf_slo: SLOChecker) -> None:
    llmperf_slo.check(llmperf_load(users=1, requests=2, max_tokens=8))
'''

THRESHOLDS = '''
[defaults]
slo = ["error_rate <= 0",
       "server[llamacpp:tokens_predicted_total].delta >= 1",
       "server[llamacpp:requests_processing].peak <= 2"]

[tests.test_held_to_a_server_slo_it_misses]
slo = ["server[llamacpp:tokens_predicted_total].delta < 1"]
'''


def test_an_attached_engine_s_metrics_reach_the_report_and_its_slos(
        smollm2_served: ServedModel, tmp_path: Path) -> None:
    assert smollm2_served.endpoint is not None and smollm2_served.metrics_url
    (tmp_path / "test_attached.py").write_text(TEST)
    (tmp_path / "thresholds.toml").write_text(THRESHOLDS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "test_attached.py", "-p", "no:cacheprovider",
         "--backend", "openai", "--model", "smollm2-135m",
         "--base-url", smollm2_served.endpoint.base_url,
         "--llmperf-metrics-url", smollm2_served.metrics_url, "--llmperf-warmup=1",
         "--llmperf-json=result.json", "--llmperf-report=report.md", "--junitxml=junit.xml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output  # the second test misses its SLO, nothing else
    assert "1 failed, 1 passed" in done.stdout, output

    first, second = load_run(tmp_path / "result.json").windows
    for recorded in (first, second):
        window = recorded.window
        generated = sum(r.output_tokens for r in window.run.records if r.ok)
        # The counter moved by exactly what the measured requests generated (warm-up ended
        # before the first scrape).
        assert server_value(window.server_families, "llamacpp:tokens_predicted_total",
                            "delta") == (generated, None)
        assert window.server_metrics is not None
        assert window.server_metrics["generation_tokens"] == generated
        families = window.server_families[0]
        assert families.url == smollm2_served.metrics_url
        assert {"llamacpp:prompt_tokens", "llamacpp:requests_processing",
                "llamacpp:n_busy_slots_per_decode"} <= set(families.families)
    assert [v.state for v in first.verdicts] == ["pass", "pass", "pass"]
    missed, = [v for v in second.verdicts if v.state == "fail"]
    assert missed.check.text == "server[llamacpp:tokens_predicted_total].delta < 1"
    assert f"server[llamacpp:tokens_predicted_total].delta = {missed.measured:g}" in output

    properties = {p.get("name"): p.get("value")
                  for case in ET.parse(tmp_path / "junit.xml").iter("testcase")
                  if (case.get("name") or "").startswith("test_held_to_a_server_slo_it_misses")
                  for p in case.iter("property")}
    assert float(properties["llmperf.server[llamacpp:tokens_predicted_total].delta"] or 0) >= 1
    assert float(properties["llmperf.server.generation_tokens"] or 0) >= 1

    report = (tmp_path / "report.md").read_text()
    # The engine's own figure beside the client's, found among every engine's names.
    assert "(decode time / generated tokens)" in report
    assert f"Server metrics at {smollm2_served.metrics_url}:" in report
    assert "`llamacpp:tokens_predicted`" in report

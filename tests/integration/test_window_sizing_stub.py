"""A window no option sizes, end to end through the plugin (results.sequential), against the
measuring-instrument stub whose first token comes after a known 5 ms: far from its limit the
window stops at its first look (64 requests) and the terminal, junit and report say so; a clear
miss stops there too and fails; a size the user gives (--llmperf-requests) fixes the window."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.stub_process import running_stub

REPO = Path(__file__).resolve().parents[2]
DECIDED = "stopped at 64 requests: every SLO decided (look 1 of 3, 96.24 % confidence)"


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with running_stub("--token-ms", "1", "--first-ms", "5", "--jitter", "0") as url:
        yield url


def run_latency_test(tmp_path: Path, url: str, slo: str,
                     *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    """(process, junit properties, report) of the suite's single-user test held to ``slo``."""
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text(f'[defaults]\nslo = ["{slo}"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_latency.py", "-p", "no:cacheprovider",
         "--backend", "openai", "--model", "stub", "--base-url", url, "--llmperf-warmup=1",
         "--llmperf-max-tokens=8", "--junitxml=junit.xml", "--llmperf-report=report.md",
         *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    props = ({str(p.get("name")): str(p.get("value"))
              for p in ET.parse(tmp_path / "junit.xml").iter("property")}
             if (tmp_path / "junit.xml").exists() else {})
    report = (tmp_path / "report.md").read_text() if (tmp_path / "report.md").exists() else ""
    return done, props, report


def test_a_window_far_from_its_limit_stops_at_its_first_look(tmp_path: Path,
                                                             stub_url: str) -> None:
    done, props, report = run_latency_test(tmp_path, stub_url, "ttft_ms.p95 < 1000")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert (props["llmperf.requests"], props["llmperf.window_sizing"]) == ("64", DECIDED)
    assert f"test_single_user_latency[openai-stub]: {DECIDED}" in out
    assert f"Window sized by its SLOs: {DECIDED}." in report
    assert "inconclusive" not in out


def test_a_clear_miss_stops_at_its_first_look_and_fails(tmp_path: Path, stub_url: str) -> None:
    done, props, _ = run_latency_test(tmp_path, stub_url, "ttft_ms.p95 < 1")  # TTFT is 5 ms
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert (props["llmperf.requests"], props["llmperf.window_sizing"]) == ("64", DECIDED)
    assert "required < 1 ms" in out


def test_a_size_the_user_gives_fixes_the_window(tmp_path: Path, stub_url: str) -> None:
    done, props, _ = run_latency_test(tmp_path, stub_url, "ttft_ms.p95 < 1000",
                                      "--llmperf-requests=16")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert props["llmperf.requests"] == "16"
    assert "llmperf.window_sizing" not in props
    assert "inconclusive, 16 requests are too few to bound p95" in out

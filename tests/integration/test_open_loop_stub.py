"""The suite's open-loop test against the measuring-instrument stub (tests/fakes/sse_stub.py):
on a fast server the achieved rate is the offered one; on a server with one slot, whose
capacity is known, a higher rate fails as overloaded and names the rate it sustained."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.fakes.stub_process import running_stub

REPO = Path(__file__).resolve().parents[2]
# Load against the measuring-instrument stub, tens of seconds: run on purpose
# (`pytest -m slow`, as CI does).
pytestmark = pytest.mark.slow


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    # Only pacing can fail these runs: every latency limit is out of reach.
    (tmp_path / "thresholds.toml").write_text(
        '[defaults]\nslo = ["ttft_ms.p95 < 100000", "error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def run_rate_test(suite: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_rate.py", "-p", "no:cacheprovider",
         "--backend", "openai", "--model", "stub", "--base-url", url, "--llmperf-warmup=4",
         "--llmperf-max-tokens=24", "--junitxml=junit.xml", "--llmperf-report=report.md",
         *args],
        cwd=suite, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": ""})


def properties(suite: Path) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("value"))
            for p in ET.parse(suite / "junit.xml").iter("property")}


def test_a_fast_server_gets_the_rate_offered(suite: Path) -> None:
    with running_stub("--token-ms", "2", "--first-ms", "5", "--jitter", "0") as url:
        done = run_rate_test(suite, url, "--llmperf-rate=20", "--llmperf-duration=10")
    assert done.returncode == 0, done.stdout + done.stderr
    props = properties(suite)
    offered, sent = float(props["llmperf.offered_rate"]), float(props["llmperf.send_rate"])
    # 10 s of Poisson arrivals at 20/s, about 200: the drawn rate is within ~3/sqrt(200) of 20.
    assert 20 * (1 - 3 / 200 ** 0.5) < offered < 20 * (1 + 3 / 200 ** 0.5)
    assert sent == pytest.approx(offered, rel=0.02)
    assert float(props["llmperf.request_throughput"]) > 0.9 * offered
    assert float(props["llmperf.schedule_slip_ms.p95"]) < 20
    assert abs(float(props["llmperf.queue_growth"])) < 0.05
    assert props["llmperf.load"] == "20 req/s poisson"
    assert "llmperf.overload" not in props


def test_a_rate_above_capacity_fails_as_overloaded_with_the_rate_sustained(
        suite: Path) -> None:
    # One slot, 5 + 23 x 10 ms per answer: it serves about 4.2 requests a second.
    with running_stub("--token-ms", "10", "--first-ms", "5", "--jitter", "0",
                      "--slots", "1") as url:
        # 3.3 s of arrivals: 40 requests, which take the one slot about 9.4 s.
        done = run_rate_test(suite, url, "--llmperf-rate=12", "--llmperf-duration=3.3",
                             "--llmperf-arrivals=constant")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    found = re.search(r"overloaded: offered ([\d.]+) req/s, sustained ([\d.]+) req/s; the time "
                      r"from each request's scheduled time to its last token grew by ([\d.]+) "
                      r"s every second", out)
    assert found, out
    offered, sustained, growth = map(float, found.groups())
    assert offered == pytest.approx(12, rel=0.01)
    # Below the slot's 4.26/s by the warm-up answers still queued ahead when the window began.
    assert sustained == pytest.approx(1000 / 235, rel=0.15)
    # Request i starts at i / mu instead of i / lambda: the wait grows lambda / mu - 1 s/s.
    assert growth == pytest.approx(offered / sustained - 1, rel=0.15)
    assert "OVERLOADED" in out  # the terminal table's load column
    assert "**Overloaded: offered" in (suite / "report.md").read_text()
    assert properties(suite)["llmperf.overload"].startswith("overloaded: offered")

"""Capacity search against the measuring-instrument stub, whose time per token grows linearly
with the streams in flight, so the true boundary is known: with a token gap of 4 ms per
stream in flight, ``tpot_ms.p95 < 38`` holds up to 9 concurrent users (36 ms) and breaks at 10
(40 ms).  Attached as any OpenAI-compatible server is (``--backend openai --base-url``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_llmperf import CapacityResult, RecordedCapacity, load_run
from tests.fakes.stub_process import running_stub

# About two minutes in all: run on purpose (`pytest -m slow`, as CI does).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LINEAR = ("--token-ms", "4", "--per-stream-ms", "4", "--first-ms", "5", "--jitter", "0")

# Probes of 3 s of arrivals, not 10: the stub settles in well under a second.
RATE_TEST = '''
def test_capacity_rate(llmperf_target, llmperf_capacity, llmperf_slo):
    llmperf_slo.check(llmperf_capacity("rate", start=2, probe_s=3))
'''


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "perf" / "test_rate_capacity.py").write_text(RATE_TEST)
    (tmp_path / "thresholds.toml").write_text(
        '[defaults]\nslo = ["tpot_ms.p95 < 38", "error_rate <= 0"]\n'
        '[tests.test_capacity_users]\nslo = ["capacity_max_concurrency >= 9"]\n')
    (tmp_path / "no-capacity-slo.toml").write_text(
        '[defaults]\nslo = ["tpot_ms.p95 < 38", "error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def run(suite: Path, url: str, test: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", test, "-p", "no:cacheprovider", "--backend", "openai",
         "--model", "stub", "--base-url", url, "--llmperf-max-tokens=24",
         "--junitxml=junit.xml", "--llmperf-report=report.md", *args],
        cwd=suite, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": ""})


def properties(suite: Path) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("value"))
            for p in ET.parse(suite / "junit.xml").iter("property")}


def capacity_search(suite: Path) -> CapacityResult:
    document = load_run(suite / "llmperf-output" / "results.json")
    (recorded,) = [s for s in document.searches if isinstance(s, RecordedCapacity)]
    return recorded.search


def test_the_user_search_finds_the_known_boundary_and_stops_failed_probes_early(
        suite: Path) -> None:
    with running_stub(*LINEAR) as url:
        done = run(suite, url, "perf/test_capacity.py::test_capacity_users",
                   "--llmperf-capacity-budget=200")
    assert done.returncode == 0, done.stdout + done.stderr
    props = properties(suite)
    assert props["llmperf.capacity.max_concurrency"] == "9.0"
    assert props["llmperf.capacity.first_failing"] == "10.0"
    assert props["llmperf.capacity.summary"] == (
        "max 9 users: 9 users passed 2 of 2, 10 users failed 2 of 2; 9 users: every SLO "
        "decided on 63 requests of 2 probes (96 % confidence)")
    assert props["llmperf.capacity.broke_first"].startswith("tpot_ms.p95 = ")
    assert props["llmperf.capacity.slo[capacity_max_concurrency >= 9]"].startswith("pass")
    probes = capacity_search(suite).probes
    # Doubling, bisecting, 10 users confirmed; then 9 users settled: 45 more requests pooled
    # with its first 18 (2 a user), every TPOT within the limit (the stub adds no jitter).
    assert [probe.load for probe in probes] == [1, 2, 4, 8, 16, 12, 10, 9, 10, 9]
    assert probes[-1].pooled == 18 and probes[-1].point is not None
    assert probes[-1].point.requests >= 45
    # 16 users miss the limit with every request: the probe stopped long before its 32.
    sixteen = next(probe for probe in probes if probe.load == 16)
    assert sixteen.stopped_early and sixteen.point is not None and sixteen.point.requests < 32
    assert "max 9 users" in done.stdout  # the terminal's capacity line
    report = (suite / "report.md").read_text()
    assert "## Capacity" in report and "| 9 users " in report


def test_the_budget_bounds_the_search_and_the_result_says_so(suite: Path) -> None:
    with running_stub(*LINEAR) as url:
        done = run(suite, url, "perf/test_capacity.py::test_capacity_users",
                   "--llmperf-capacity-budget=2")
    # The capacity SLO (>= 9) fails: the budget stopped the search well below it.
    assert done.returncode == 1, done.stdout + done.stderr
    search = capacity_search(suite)
    assert search.stop_reason == "budget"
    assert search.elapsed_s <= 2
    assert "the budget (2 s) ran out first" in search.summary
    assert "capacity_max_concurrency = " in done.stdout and "required >= 9" in done.stdout


def test_the_rate_search_brackets_the_known_rate_boundary(suite: Path) -> None:
    # Constant arrivals at lambda/s with n streams in flight: token gaps 4 n ms, E2EL = 5 + 23
    # x 4 n ms, and Little's law n = lambda E2EL give n = 5 lambda / (1000 - 92 lambda); TPOT
    # = 4 n < 38 holds up to lambda = 9500 / 879 = 10.8 req/s (and the stub is unstable from
    # 1000 / 92 = 10.9).  Just above it a finite probe cannot tell: at 11.3 req/s the queue
    # grows by only about 0.5 streams a second, too slowly to lift TPOT over the limit within a
    # 3 s probe (measured: 11.3 passes 2 of 2, 12.3 fails 2 of 2, on a stub that delivers
    # its delays exactly).
    truth = 9500 / 879
    with running_stub(*LINEAR) as url:
        done = run(suite, url, "perf/test_rate_capacity.py", "--llmperf-arrivals=constant",
                   "--llmperf-capacity-budget=200")
    assert done.returncode == 0, done.stdout + done.stderr
    props = properties(suite)
    low = float(props["llmperf.capacity.max_rate"])
    high = float(props["llmperf.capacity.first_failing"])
    assert low < truth * 1.06 and high > truth * 0.97, props["llmperf.capacity.summary"]
    assert high / low <= 1.1 + 1e-9
    assert float(props["llmperf.capacity.goodput"]) > 0


def test_a_capacity_lost_against_the_baseline_fails_its_gate(suite: Path) -> None:
    with running_stub(*LINEAR) as url:
        saved = run(suite, url, "perf/test_capacity.py::test_capacity_users",
                    "--llmperf-capacity-budget=200", "--llmperf-save=before")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    # 7 ms more per other stream: TPOT = 4 + 7 (n - 1) < 38 holds to 5 users (32 ms: a 6 ms
    # margin for a busy host's lateness, which only ever reads slower), not 6 (39 ms).
    slower = ("--token-ms", "4", "--per-stream-ms", "7", "--first-ms", "5", "--jitter", "0")
    with running_stub(*slower) as url:
        done = run(suite, url, "perf/test_capacity.py::test_capacity_users",
                   "--llmperf-capacity-budget=200", "--llmperf-compare=before",
                   "--llmperf-compare-fail=capacity_max_concurrency:10%",
                   "--thresholds", str(suite / "no-capacity-slo.toml"))
    assert done.returncode == 1, done.stdout + done.stderr
    line = properties(suite)["llmperf.capacity.compare"]
    assert line.startswith("9 -> 5 users (-44.4 %): regressed: 6 users failed 2 of 2; "
                           "the baseline held 9"), line
    assert line.endswith("[gate capacity_max_concurrency:10%: FAILED]")
    assert "capacity_max_concurrency 9 -> 5 users" in done.stdout
    assert "Against the baseline (0001_before.json): 9 -> 5 users" in (
        suite / "report.md").read_text()

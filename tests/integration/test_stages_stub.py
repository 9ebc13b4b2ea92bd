"""The suite's staged rates against the measuring-instrument stub (known 5 ms first token, 1 ms
a token): --llmperf-rate-stages gives one window per stage in the result document, each holding
the requests scheduled in its stage, each sent within a few ms of its scheduled time; without
the option the test says how to run it."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.store.documents import load_run
from tests.fakes.stub_process import running_stub

REPO = Path(__file__).resolve().parents[2]
# Load against the measuring-instrument stub for tens of seconds: run on purpose
# (`pytest -m slow`, as CI does).
pytestmark = pytest.mark.slow


def run_suite(suite: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_rate_stages.py", "-p", "no:cacheprovider",
         "-rs", "--backend", "openai", "--model", "stub", "--base-url", url,
         "--llmperf-warmup=2", "--llmperf-json=result.json", *args],
        cwd=suite, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": ""})


def test_each_stage_is_a_window_sent_on_time(tmp_path: Path) -> None:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text('[defaults]\nslo = ["error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    with running_stub("--token-ms", "1", "--first-ms", "5", "--jitter", "0") as url:
        skipped = run_suite(tmp_path, url)
        done = run_suite(tmp_path, url, "--llmperf-rate-stages=5:4,5..15:4,15:3",
                         "--llmperf-arrivals=constant")
    assert skipped.returncode == 0 and "no --llmperf-rate-stages given" in skipped.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stage 3 of 3 (15 req/s for 3 s)" in done.stdout
    windows = [w.window for w in load_run(tmp_path / "result.json").windows]
    assert [w.shape.label for w in windows] == [
        "5 req/s constant", "5 to 15 req/s ramp over 4 s constant", "15 req/s constant"]
    # Constant arrivals: 20 in 4 s at 5 req/s, 40 over the ramp (its mean 10 req/s), 45.
    assert [w.requests for w in windows] == [20, 40, 45]
    late_ms = []
    for window, seconds in zip(windows, (4, 4, 3), strict=True):
        # Stored times count from the window's start: the stage's scheduled start.
        start_ns = window.run.window_start_ns
        for r in window.run.records:
            assert r.scheduled_ns is not None
            assert -1000 <= r.scheduled_ns - start_ns < seconds * 1_000_000_000
            late_ms.append((r.send_ns - r.scheduled_ns) / 1e6)
        assert window.run.duration_s >= seconds
        assert window.metrics.value("error_rate") == 0
    print(f"\nsent after scheduled: median {statistics.median(late_ms):.2f} ms, "
          f"max {max(late_ms):.2f} ms over {len(late_ms)} requests")
    assert statistics.median(late_ms) < 5 and max(late_ms) < 50


def test_repeats_run_the_whole_schedule_again_and_each_stage_gets_its_repeats(
        tmp_path: Path) -> None:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text('[defaults]\nslo = ["error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    with running_stub("--token-ms", "1", "--first-ms", "5", "--jitter", "0") as url:
        done = run_suite(tmp_path, url, "--llmperf-rate-stages=5:2,10:2",
                         "--llmperf-arrivals=constant", "--llmperf-repeats=2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stage 2 of 2 (10 req/s for 2 s, repeat 2 of 2)" in done.stdout
    recorded = load_run(tmp_path / "result.json").windows
    # Stage 1 then its repeat, stage 2 then its repeat: each stage is one load of the test.
    assert [(w.window.shape.label, w.provenance.repeat) for w in recorded] == [
        ("5 req/s constant", 1), ("5 req/s constant", 2),
        ("10 req/s constant", 1), ("10 req/s constant", 2)]
    assert [w.provenance.call for w in recorded] == [1, 1, 2, 2]
    # The repeats are the schedule again, without the warm-up: the same requests per stage.
    assert [w.window.requests for w in recorded] == [10, 10, 20, 20]
    assert recorded[0].window.run.warmup_requests == 2
    assert recorded[1].window.run.warmup_requests == 0

"""The suite's trace replay against the measuring-instrument stub (known 5 ms first token, 1 ms
a token): every request is sent at its recorded offset (the records' scheduled times are the
trace's, their send times within a few ms of them), --llmperf-trace-speed compresses the
schedule and --llmperf-trace-window slices it."""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.store.documents import load_run
from tests.fakes.stub_process import running_stub

REPO = Path(__file__).resolve().parents[2]
# Load against the measuring-instrument stub, tens of seconds: run on purpose
# (`pytest -m slow`, as CI does).
pytestmark = pytest.mark.slow


def bursty_trace(path: Path) -> list[float]:
    """120 requests over 6 s: Poisson at 10 req/s and three bursts of 10 within 50 ms, half
    of them under one of two shared blocks; their offsets in seconds."""
    rng = random.Random(5)
    times, now = [], 0.0
    while len(times) < 90:
        times.append(now)
        now += rng.expovariate(15.0)
    times += [t + rng.uniform(0, 0.05) for t in (1.0, 3.0, 5.0) for _ in range(10)]
    times.sort()
    with path.open("w") as out:
        for t in times:
            blocks = rng.choice(([1], [2], []))
            out.write(json.dumps({"timestamp": round(t * 1000, 3),
                                  "input_length": 512 * len(blocks) + rng.randint(16, 40),
                                  "output_length": rng.randint(2, 6),
                                  **({"hash_ids": blocks} if blocks else {})}) + "\n")
    return [round(t * 1000, 3) / 1000 - times[0] for t in times]


@pytest.fixture
def suite(tmp_path: Path) -> tuple[Path, list[float]]:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text('[defaults]\nslo = ["error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path, bursty_trace(tmp_path / "trace.jsonl")


def replay(suite: Path, url: str, *args: str) -> tuple[list[float], list[float]]:
    """(scheduled offsets from the first measured one, send - scheduled in ms) of a replay."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_trace.py", "-p", "no:cacheprovider",
         "--backend", "openai", "--model", "stub", "--base-url", url, "--llmperf-warmup=2",
         "--llmperf-dataset=trace:trace.jsonl", "--llmperf-json=result.json", *args],
        cwd=suite, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    (recorded,) = load_run(suite / "result.json").windows
    window = recorded.window
    assert window.prompts is not None and window.prompts.source == "trace"
    records = sorted(window.run.records, key=lambda r: r.request_id)
    due = [r.scheduled_ns or 0 for r in records]
    return ([(d - due[0]) / 1e9 for d in due],
            [(r.send_ns - (r.scheduled_ns or 0)) / 1e6 for r in records])


def test_each_request_is_sent_at_its_recorded_offset(suite: tuple[Path, list[float]]) -> None:
    path, offsets = suite
    with running_stub("--token-ms", "1", "--first-ms", "5", "--jitter", "0") as url:
        scheduled, late = replay(path, url)
        sped, _ = replay(path, url, "--llmperf-trace-speed=2")
        sliced, _ = replay(path, url, "--llmperf-trace-window=2:4")
    assert len(scheduled) == len(offsets) == 120
    assert scheduled == pytest.approx(offsets, abs=2e-6)  # microseconds in the store
    late.sort()
    p99 = late[int(0.99 * (len(late) - 1))]
    print(f"\nsent after the recorded offset: median {statistics.median(late):.2f} ms, "
          f"p99 {p99:.2f} ms, max {late[-1]:.2f} ms over {len(late)} requests")
    assert statistics.median(late) < 2.0 and p99 < 10.0
    assert sped == pytest.approx([o / 2 for o in offsets], abs=2e-6)
    recorded = [o for o in offsets if 2.0 <= o < 4.0]
    assert sliced == pytest.approx([o - recorded[0] for o in recorded], abs=2e-6)


def test_a_test_of_your_own_replays_the_file_it_names(suite: tuple[Path, list[float]]) -> None:
    path, offsets = suite
    recorded = sum(1.0 <= o < 3.0 for o in offsets)  # what --llmperf-trace-window=1:3 keeps
    (path / "perf" / "test_mine.py").write_text(
        "from pytest_llmperf import ReplayFunction, Target\n\n\n"
        "def test_mine(llmperf_target: Target, llmperf_replay: ReplayFunction) -> None:\n"
        "    result = llmperf_replay('trace.jsonl', warmup=0)\n"
        f"    assert result.requests == {recorded}, result.requests\n"
        "    assert result.prompts is not None and result.prompts.source == 'trace'\n")
    with running_stub("--token-ms", "1", "--first-ms", "5", "--jitter", "0") as url:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "perf/test_mine.py", "-p", "no:cacheprovider",
             "--backend", "openai", "--model", "stub", "--base-url", url,
             "--llmperf-trace-window=1:3"],
            cwd=path, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout and recorded > 20

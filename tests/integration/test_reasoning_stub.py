"""The suite's reasoning test against the measuring-instrument stub: its first N tokens are
reasoning (vLLM's ``delta.reasoning_content``, or inline ``<think>``), every token gap is known,
so the time to the first answer token is known to lie N gaps after the first token."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.stub_process import running_stub

REPO = Path(__file__).resolve().parents[2]
# Load against the measuring-instrument stub, tens of seconds: run on purpose
# (`pytest -m slow`, as CI does).
pytestmark = pytest.mark.slow
REASONING, TOKEN_MS, MAX_TOKENS = 12, 10.0, 20


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    # The stub is a reasoning model here: the catalogue entry says so.
    (tmp_path / "thresholds.toml").write_text(
        '[defaults]\nslo = ["error_rate <= 0"]\n\n'
        '[tests.test_reasoning]\nslo = ["time_to_answer_ms.p95 < 100000", "unanswered <= 0"]\n\n'
        '[models.stub-r1]\nreasoning = true\nhf = { id = "stub" }\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def run_reasoning(suite: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_reasoning.py", "-p", "no:cacheprovider",
         "--backend", "openai", "--model", "stub-r1", "--base-url", url, "--llmperf-warmup=1",
         f"--llmperf-max-tokens={MAX_TOKENS}", "--llmperf-requests=6",
         "--llmperf-json=result.json", "--llmperf-report=report.md", *args],
        cwd=suite, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("style", ["field", "think"])
def test_the_time_to_the_answer_comes_after_the_thinking(suite: Path, style: str) -> None:
    with running_stub("--token-ms", str(TOKEN_MS), "--first-ms", "20", "--jitter", "0",
                      "--reasoning", str(REASONING), "--reasoning-style", style) as url:
        done = run_reasoning(suite, url)
    assert done.returncode == 0, done.stdout + done.stderr
    window = json.loads((suite / "result.json").read_text())["windows"][0]
    ttft = window["distributions"]["ttft_ms"]["median"]
    answer = window["distributions"]["time_to_answer_ms"]["median"]
    # TTFT is the first reasoning token; the answer starts REASONING token gaps later.
    assert ttft == pytest.approx(20, abs=15)
    assert answer - ttft == pytest.approx(REASONING * TOKEN_MS, rel=0.25)
    assert window["distributions"]["answer_e2el_ms"]["median"] == pytest.approx(
        window["distributions"]["e2el_ms"]["median"], abs=2)
    if style == "field":  # the usage counts the reasoning; inline tags leave it to a tokenizer
        assert window["distributions"]["reasoning_tokens"]["mean"] == REASONING
        assert window["distributions"]["answer_tokens"]["mean"] == MAX_TOKENS - REASONING
    assert window["scalars"]["unanswered"] == 0
    report = (suite / "report.md").read_text()
    assert "6 answers reasoned before they answered" in report
    assert "time_to_answer_ms (ms)" in report


def test_an_answer_cut_off_while_thinking_fails_the_unanswered_slo(suite: Path) -> None:
    # 12 tokens of reasoning and room for 10: no request gets to its answer.
    with running_stub("--token-ms", "2", "--first-ms", "5", "--jitter", "0",
                      "--reasoning", str(REASONING)) as url:
        done = run_reasoning(suite, url, "--llmperf-max-tokens=10")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "unanswered = 6 req, required <= 0 req" in done.stdout


def test_a_model_marked_reasoning_that_never_reasons_fails_with_the_reason(
        suite: Path) -> None:
    with running_stub("--token-ms", "2", "--first-ms", "5", "--jitter", "0") as url:
        done = run_reasoning(suite, url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is marked as a reasoning model, but none of 6 answers carried reasoning" in done.stdout


def test_the_reasoning_test_skips_a_model_that_does_not_reason(suite: Path) -> None:
    with running_stub("--token-ms", "2", "--first-ms", "5", "--jitter", "0") as url:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "perf/test_reasoning.py", "-p", "no:cacheprovider",
             "-rs", "--backend", "openai", "--model", "stub", "--base-url", url],
            cwd=suite, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stub is not a reasoning model" in done.stdout

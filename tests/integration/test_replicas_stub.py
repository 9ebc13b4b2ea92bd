"""Several replicas behind one suite, against two measuring-instrument stubs whose first token
comes 5 ms and 60 ms after a request: --base-url with both URLs splits the load evenly
(round-robin), every stored request names its replica, and the report and the terminal split
the figures per replica and flag the slow one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.store.documents import load_run
from tests.fakes.stub_process import running_stub

# Two stub servers and a pytest run: tens of seconds, run on purpose (`pytest -m slow`).
pytestmark = pytest.mark.slow

TEST = '''
from pytest_llmperf import LoadFunction, SLOChecker, Target


def test_replicas(llmperf_target: Target, llmperf_load: LoadFunction,
                  llmperf_slo: SLOChecker) -> None:
    llmperf_slo.check(llmperf_load(users=2, requests=24, max_tokens=8))
'''


def test_load_is_split_over_replicas_and_the_slow_one_is_flagged(tmp_path: Path) -> None:
    (tmp_path / "test_replicas.py").write_text(TEST)
    (tmp_path / "thresholds.toml").write_text('[defaults]\nslo = ["error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    with running_stub("--token-ms", "1", "--first-ms", "5", "--jitter", "0") as fast, \
            running_stub("--token-ms", "1", "--first-ms", "60", "--jitter", "0") as slow:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "test_replicas.py", "-p", "no:cacheprovider",
             "--backend", "openai", "--model", "stub", "--base-url", f"{fast},{slow}",
             "--llmperf-warmup=2", "--llmperf-json=result.json", "--llmperf-report=report.md"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    (recorded,) = load_run(tmp_path / "result.json").windows
    records = recorded.window.run.records
    assert sorted({r.replica for r in records}) == sorted([fast, slow])
    assert sum(r.replica == fast for r in records) == 12 == sum(r.replica == slow for r in records)
    figures = {f.url: f for f in recorded.window.replicas}
    ttft = {url: f.medians["ttft_ms"] or 0 for url, f in figures.items()}
    print(f"\nTTFT median per replica: fast {ttft[fast]:.1f} ms, slow {ttft[slow]:.1f} ms")
    assert 5 <= ttft[fast] < 30 and 60 <= ttft[slow] < 120
    flag = f"replica {slow} is much slower: median TTFT"
    assert flag in done.stdout
    report = (tmp_path / "report.md").read_text()
    assert "| replica" in report and f"**Replica {slow} is much slower" in report
    assert "and 1 more replica" in report

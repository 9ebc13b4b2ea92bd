"""``--llmperf-endpoint rerank`` against the measuring stub, whose /v1/rerank answers after a
known delay (--first-ms plus --token-ms per document): every request scores its query's
documents, the latency is the injected delay plus the client's and the network's little, the
streamed metrics are skipped, and the documents per second follow from the window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.store.documents import load_run
from tests.fakes.stub_process import running_stub

pytestmark = pytest.mark.integration

TEST = '''
from pytest_llmperf import LoadFunction, SLOChecker


def test_rerank(llmperf_load: LoadFunction, llmperf_slo: SLOChecker) -> None:
    llmperf_slo.check(llmperf_load(users=2, requests=12))
'''

THRESHOLDS = '''[defaults]
slo = ["error_rate <= 0", "e2el_ms.median < 2000", "embedded_inputs_per_s > 1",
       "ttft_ms.p95 < 100"]
'''


def test_rerank_requests_score_every_document_at_the_injected_latency(tmp_path: Path) -> None:
    (tmp_path / "test_rerank.py").write_text(TEST)
    (tmp_path / "thresholds.toml").write_text(THRESHOLDS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # 20 ms + 5 ms x 6 documents: every answer is due 50 ms after its request.
    with running_stub("--first-ms", "20", "--token-ms", "5", "--jitter", "0") as url:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "test_rerank.py", "-p", "no:cacheprovider",
             "--backend", "openai", "--model", "stub", "--base-url", url,
             "--llmperf-endpoint", "rerank", "--llmperf-rerank-documents", "6",
             "--llmperf-warmup=1", "--llmperf-json=result.json", "--llmperf-report=report.md"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    (recorded,) = load_run(tmp_path / "result.json").windows
    window = recorded.window
    records = window.run.records
    assert len(records) == 12 and all(r.ok for r in records), [r.error for r in records]
    assert all(r.embedded_inputs == 6 and not r.chunk_ns for r in records)
    # The stub's usage: query words x documents + document words, from the server.
    assert all(r.input_tokens and r.input_tokens > 6 for r in records)
    e2el = window.metrics.value("e2el_ms", "median")
    print(f"\nrerank e2el median {e2el:.1f} ms (50 ms injected), "
          f"{window.metrics.value('embedded_inputs_per_s'):.1f} documents/s")
    assert e2el is not None and 50 <= e2el < 1000
    per_second = window.metrics.value("embedded_inputs_per_s")
    assert per_second == pytest.approx(6 * 12 / window.run.duration_s)
    states = {v.check.key: v.state for v in recorded.verdicts}
    assert states["ttft_ms.p95"] == "skip"  # nothing streams
    assert states["embedded_inputs_per_s"] == "pass"
    assert window.prompts is not None and window.prompts.details["rerank_documents"] == 6

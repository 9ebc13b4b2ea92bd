"""Save a baseline, slow the server down for real, compare: the gate fails with the table; rerun
unchanged: it passes.  The server is the measuring-instrument stub (tests/fakes/sse_stub.py),
whose per-token delay is the known ground truth, attached as any OpenAI server is."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_llmperf import load_run
from tests.fakes.stub_process import running_stub

REPO = Path(__file__).resolve().parents[2]
# Load against the measuring-instrument stub, tens of seconds: run on purpose
# (`pytest -m slow`, as CI does).
pytestmark = pytest.mark.slow
RUN = ["-p", "no:cacheprovider", "--backend", "openai",
       "--model", "stub", "--llmperf-requests=64", "--llmperf-warmup=4",
       "--llmperf-max-tokens=24", "--junitxml=junit.xml", "--llmperf-report=report.md"]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text(
        '[defaults]\nslo = ["tpot_ms.mean < 1000", "error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def stub(token_ms: float) -> contextlib.AbstractContextManager[str]:
    return running_stub("--token-ms", str(token_ms), "--first-ms", "15")


def pytest_run(suite: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The suite's concurrency test, or the test file ``args`` names first."""
    paths = [] if args and args[0].startswith("perf/") else ["perf/test_concurrency.py"]
    return subprocess.run([sys.executable, "-m", "pytest", *paths, *RUN, "--base-url", url,
                           *args],
                          cwd=suite, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "GITHUB_STEP_SUMMARY": str(suite / "summary.md")})


def properties(suite: Path) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("value"))
            for p in ET.parse(suite / "junit.xml").iter("property")}


def test_a_slower_server_fails_the_gate_and_an_unchanged_one_passes(suite: Path) -> None:
    with stub(token_ms=10) as url:
        saved = pytest_run(suite, url, "--llmperf-save", "before")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert "saved run: " in saved.stdout and (suite / ".llmperf" / "0001_before.json").is_file()

    gate = ["--llmperf-compare", "before", "--llmperf-compare-fail", "tpot_ms.p95:10%"]
    with stub(token_ms=13) as url:  # every token 30 % slower
        slower = pytest_run(suite, url, *gate)
    assert slower.returncode == 1, slower.stdout + slower.stderr
    out = slower.stdout
    assert "tpot_ms.p95 regressed: +" in out and "(gate tpot_ms.p95:10%, --llmperf-compare-fail)" \
        in out
    assert "llmperf comparison with the baseline" in out
    assert "regressed: FAIL" in out
    prop = properties(suite)["llmperf.compare[tpot_ms.p95]"]
    assert prop.startswith("regressed: +")
    change = float(prop.split("+", 1)[1].split(" %")[0])
    assert 20 < change < 40, prop  # the stub's +30 %
    report = (suite / "report.md").read_text()
    assert "### Against the baseline" in report and "**regressed: FAIL**" in report
    assert "### Against the baseline" in (suite / "summary.md").read_text()

    with stub(token_ms=10) as url:
        same = pytest_run(suite, url, *gate)
    assert same.returncode == 0, same.stdout + same.stderr
    assert not properties(suite)["llmperf.compare[tpot_ms.p95]"].startswith("regressed")


def test_a_baseline_from_other_hardware_is_refused_before_any_server_starts(suite: Path) -> None:
    with stub(token_ms=5) as url:
        saved = pytest_run(suite, url, "--llmperf-save", "before", "--llmperf-requests=8")
        assert saved.returncode == 0, saved.stdout + saved.stderr
        path = suite / ".llmperf" / "0001_before.json"
        document = json.loads(path.read_text())
        document["fingerprint"]["cpu_model"] = "Some Other CPU"
        path.write_text(json.dumps(document))

        refused = pytest_run(suite, "http://127.0.0.1:9/v1", "--llmperf-compare", "before")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "measured on other hardware (cpu_model: baseline 'Some Other CPU', this " \
            "machine '" in refused.stderr
        assert "--llmperf-compare-any-hardware" in refused.stderr

        anyway = pytest_run(suite, url, "--llmperf-compare", "before", "--llmperf-requests=8",
                            "--llmperf-compare-any-hardware", "--llmperf-save", "before")
        assert anyway.returncode == 0, anyway.stdout + anyway.stderr
        assert "compared across hardware: other hardware (cpu_model" in anyway.stdout
        assert "other hardware (cpu_model" in properties(suite)["llmperf.compare[tpot_ms.mean]"]

        pooled = pytest_run(suite, url, "--llmperf-compare", "before", "--llmperf-requests=8",
                            "--llmperf-compare-any-hardware", "--llmperf-compare-runs=2")
        assert pooled.returncode == 0, pooled.stdout + pooled.stderr
        assert "baseline: 0001_before.json .. 0002_before.json (2 runs)" in pooled.stdout
        too_many = pytest_run(suite, url, "--llmperf-compare", "before",
                              "--llmperf-compare-runs=3")
    assert too_many.returncode == 4
    assert "2 run(s) saved as 'before' in " in too_many.stderr
    assert "3 asked for: save 1 more with --llmperf-save before" in too_many.stderr


def test_a_gate_fails_a_test_that_never_checks_its_slos(suite: Path) -> None:
    (suite / "perf" / "test_own.py").write_text(
        "def test_own(llmperf_target, llmperf_load):\n"
        "    llmperf_load(users=2)\n")
    (suite / "thresholds.toml").write_text(
        '[defaults]\nslo = ["tpot_ms.p95 regresses < 10%"]\n')
    own = ["perf/test_own.py", "--llmperf-requests=32"]
    with stub(token_ms=5) as url:
        saved = pytest_run(suite, url, *own, "--llmperf-save", "before")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    with stub(token_ms=8) as url:
        slower = pytest_run(suite, url, *own, "--llmperf-compare", "latest")
    assert slower.returncode == 1, slower.stdout + slower.stderr
    assert "tpot_ms.p95 regressed: +" in slower.stdout
    assert "(gate tpot_ms.p95 regresses < 10%, " in slower.stdout
    assert "thresholds.toml:2)" in slower.stdout


def test_repeats_give_whole_window_numbers_an_interval(suite: Path) -> None:
    repeated = ["--llmperf-requests=16", "--llmperf-repeats=3", "--llmperf-json=run.json"]
    with stub(token_ms=5) as url:
        saved = pytest_run(suite, url, *repeated, "--llmperf-save", "before")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    windows = load_run(suite / "run.json").windows
    assert [(w.provenance.call, w.provenance.repeat, w.window.run.warmup_requests)
            for w in windows] == [(1, 1, 4), (1, 2, 0), (1, 3, 0)]
    assert all(w.window.requests == 16 and w.verdicts for w in windows)
    assert {"llmperf.completed", "llmperf.2.completed", "llmperf.3.completed"} <= set(
        properties(suite))

    with stub(token_ms=8) as url:
        slower = pytest_run(suite, url, *repeated, "--llmperf-compare", "before",
                            "--llmperf-compare-fail", "output_token_throughput:10%")
    assert slower.returncode == 1, slower.stdout + slower.stderr
    row = properties(suite)["llmperf.3.compare[output_token_throughput]"]
    assert row.startswith("regressed: -") and " [-" in row, row

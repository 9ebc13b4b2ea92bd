"""``--llmperf-ab`` through pytest: the suite's tests/perf/test_ab.py run against two
measuring-instrument stubs (tests/fakes/sse_stub.py) attached as OpenAI-compatible servers.
An identical pair passes, a candidate 20 % slower per token fails the test on its gate, every
window is recorded with its side, and without the option the test is skipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.fakes.stub_process import running_stub

REPO = Path(__file__).resolve().parents[2]
LENIENT = '[defaults]\nslo = ["error_rate <= 0.01"]\n'


def run_suite(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "perf").mkdir(exist_ok=True)
    shutil.copy(REPO / "tests" / "perf" / "test_ab.py", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text(LENIENT)
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_ab.py", "-p", "no:cacheprovider", "-rs",
         "--backend", "openai", "--model", "stub", "--llmperf-requests", "12",
         "--llmperf-warmup", "1", "--llmperf-max-tokens", "12", "--junitxml", "junit.xml",
         *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)


def ab(a: str, b: str) -> list[str]:
    return ["--llmperf-base-url", a, "--llmperf-ab", f"before: url={a}; after: url={b}",
            "--llmperf-compare-fail", "tpot_ms.mean:5%"]


def test_an_identical_pair_passes_and_records_both_sides(tmp_path: Path) -> None:
    with running_stub("--token-ms", "5", "--first-ms", "5", "--jitter", "0.05") as a, \
            running_stub("--token-ms", "5", "--first-ms", "5", "--jitter", "0.05") as b:
        done = run_suite(tmp_path, *ab(a, b))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    document = json.loads((tmp_path / "llmperf-output" / "results.json").read_text())
    sides = [w.get("side") for w in document["windows"]]
    assert sides == ["before", "after", "after", "before"] * 2  # counterbalanced rounds
    assert document["windows"][-1]["comparison"]["rows"]
    props = {p.get("name"): p.get("value") for p in ET.parse(tmp_path / "junit.xml").iter(
        "property")}
    assert "no significant change" in props["llmperf.ab[tpot_ms.mean]"]


def test_a_slower_candidate_fails_on_its_gate(tmp_path: Path) -> None:
    with running_stub("--token-ms", "5", "--first-ms", "5", "--jitter", "0.05") as a, \
            running_stub("--token-ms", "6", "--first-ms", "5", "--jitter", "0.05") as b:
        done = run_suite(tmp_path, *ab(a, b))
    assert done.returncode == 1, done.stdout[-4000:]
    assert "tpot_ms.mean" in done.stdout and "regressed" in done.stdout
    assert "after against before" in done.stdout


def test_without_the_option_it_is_skipped_with_how_to_give_it(tmp_path: Path) -> None:
    with running_stub("--token-ms", "5", "--first-ms", "5") as a:
        done = run_suite(tmp_path, "--llmperf-base-url", a)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "give the two builds with --llmperf-ab" in done.stdout


@pytest.mark.parametrize(("value", "message"), [
    ("before: url=http://127.0.0.1:1/v1", "expected two sides"),
    ("before: colour=red; after: url=http://127.0.0.1:1/v1", "KEY one of url, python"),
    ("before: url=http://user:pw@127.0.0.1:1/v1; after: url=http://127.0.0.1:2/v1", "url"),
    ("before url=http://user:pw@127.0.0.1:1/v1; after: url=http://127.0.0.1:2/v1",
     "expected NAME: KEY=VALUE"),  # echoed, the URL's credentials left out
])
def test_a_bad_value_stops_pytest_naming_it(tmp_path: Path, value: str, message: str) -> None:
    done = run_suite(tmp_path, "--llmperf-base-url", "http://127.0.0.1:1/v1",
                     "--llmperf-ab", value)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "--llmperf-ab (command line): invalid value" in done.stderr
    assert message in done.stderr
    assert "user:pw" not in done.stderr  # credentials are never echoed

"""The shipped perf suite, run as a user runs it, against the real embedded engine."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest
import requests

from pytest_llmperf.engines.base import get_backend
from pytest_llmperf.engines.catalog import builtin_catalog
from pytest_llmperf.settings.resolve import resolve_settings
from tests.fakes.signals import default_signals

SMOLLM2 = builtin_catalog().entries["smollm2-135m"]

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAST = ["--llmperf-requests=4", "--llmperf-warmup=1", "-p", "no:cacheprovider"]
# The suite's fixed-size tests; its rate, sweep and capacity tests take minutes by design
# (they are exercised by the perf run itself and against the stub).
QUICK = ["perf/test_latency.py", "perf/test_concurrency.py"]


@pytest.fixture
def suite_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    shutil.copy(REPO / "thresholds.toml", tmp_path / "thresholds.toml")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def _engines_under(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "xllamacpp_server" in " ".join(_cmdline(c))]


def _cmdline(process: psutil.Process) -> list[str]:
    """A process's command line; none for one that is already gone or a zombie (a child's
    short-lived probe that its parent has not reaped yet)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_one_impossible_threshold_fails_exactly_that_test(suite_copy: Path) -> None:
    # Limits any busy 2-core machine meets, and one that nothing can.
    (suite_copy / "thresholds.toml").write_text(
        '[defaults]\nslo = ["error_rate <= 0.01", "ttft_ms.p95 < 60000", "tpot_ms.p95 < 5000"]\n'
        '\n[tests.test_single_user_latency]\nslo = ["tpot_ms.p95 < 1"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *QUICK, *FAST, "--llmperf-report=report.md",
         "--junitxml=junit.xml"],
        cwd=suite_copy, capture_output=True, text=True, timeout=300, check=False,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 failed, 1 passed" in out
    assert re.search(
        r"FAILED perf/test_latency.py::test_single_user_latency\[llamacpp-smollm2-135m\]", out)
    assert re.search(
        r"tpot_ms\.p95 = [\d.]+ ms, required < 1 ms \(missed by [\d.]+ ms\) -- 4 requests "
        r"at 1 user, smollm2-135m on llamacpp \(xllamacpp [\w.]+\)", out), out
    report = (suite_copy / "report.md").read_text()
    assert re.search(r"\| tpot_ms\.p95 +\| [\d.]+ ms +\| < 1 ms +\| \*\*FAIL\*\*", report)
    assert "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53" in report
    props = {p.get("name"): p.get("value")
             for p in ET.parse(suite_copy / "junit.xml").iter("property")}
    assert float(props["llmperf.output_token_throughput"]) > 0
    # The launched engine's cold start: its first request once ready, timed apart from the
    # warm-up; and every family of its /metrics captured around each window.
    assert 0 < float(props["llmperf.first_ttft_ms"]) < 60000
    assert "| first request's TTFT once ready" in report
    assert re.search(r"Server metrics at http://127\.0\.0\.1:\d+/metrics: \d+ of \d+ families "
                     r"moved", report)


def _ready(engine: psutil.Process) -> bool:
    """Whether the engine answers its health check (its port is on its command line)."""
    argv = _cmdline(engine)
    if "--port" not in argv:
        return False
    port = argv[argv.index("--port") + 1]
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


# Ctrl+C (and SIGTERM) must end the session promptly in every phase: while the engine loads
# its model (native code, where a Python handler would wait for the load), in warm-up, and in
# the measured window.  EXIT_WITHIN_S bounds the exit, stopping the engine included.
PHASES = {"loading": None, "warm-up": 0.0, "window": 3.0}
EXIT_WITHIN_S = 20


@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_session_leaves_no_engine(suite_copy: Path, sig: signal.Signals,
                                              phase: str) -> None:
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", *QUICK, "--llmperf-requests=500", "-p",
         "no:cacheprovider"],
        cwd=suite_copy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=default_signals,
    )
    try:
        deadline = time.monotonic() + 120
        engines: list[psutil.Process] = []
        while not engines and time.monotonic() < deadline:
            time.sleep(0.1)
            engines = _engines_under(session.pid)
        assert engines, "the engine never started"
        after_ready = PHASES[phase]
        if after_ready is not None:
            while not any(_ready(e) for e in engines):
                assert time.monotonic() < deadline, "the engine never became ready"
                time.sleep(0.1)
            time.sleep(after_ready)
        session.send_signal(sig)
        sent = time.monotonic()
        session.wait(timeout=EXIT_WITHIN_S)
        _gone, alive = psutil.wait_procs(engines, timeout=15)
        assert not alive, f"engine processes outlived the session: {alive}"
        print(f"{sig.name} during {phase}: the session ended {time.monotonic() - sent:.1f} s "
              "after it")
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()


SECRET = "sk-llmperf-test-secret-0451"


def test_attach_to_a_running_openai_compatible_server(suite_copy: Path) -> None:
    """The llama.cpp server speaks the OpenAI API: attach to it as to any such server."""
    # About attaching, not this machine's speed: limits a busy 2-core machine meets (the
    # shipped TPOT p95 < 100 ms read 202 ms here with other work on the cores).
    (suite_copy / "thresholds.toml").write_text(
        '[defaults]\nslo = ["error_rate <= 0.01", "ttft_ms.p95 < 60000", "tpot_ms.p95 < 5000"]\n')
    settings = resolve_settings({}, {}, {}, suite_copy)
    with get_backend("llamacpp").serve(settings.server, SMOLLM2, suite_copy / "engine") as served:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *QUICK, *FAST, "--backend", "openai",
             "--base-url", served.endpoint.base_url, "--model", served.endpoint.model,
             "--api-key-env", "LLMPERF_TEST_KEY", "--llmperf-report=report.md",
             "--junitxml=junit.xml"],
            cwd=suite_copy, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "LLMPERF_TEST_KEY": SECRET},
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_single_user_latency[openai-" in done.stdout
    report = (suite_copy / "report.md").read_text()
    assert "OpenAI-compatible server (llamacpp)" in report
    everything = done.stdout + done.stderr + "".join(
        path.read_text(errors="replace") for path in suite_copy.rglob("*") if path.is_file()
    )
    assert SECRET not in everything


def test_attached_llamacpp_closing_its_connections_costs_no_request(suite_copy: Path) -> None:
    """llama.cpp closes every connection after a streamed answer although it announces
    keep-alive.  Attached as a plain OpenAI server (nothing tells the client so), 32 requests at
    4 users once lost 2 to "Can not write request body"; a closed pooled connection must never
    become a failed request."""
    (suite_copy / "thresholds.toml").write_text('[defaults]\nslo = ["error_rate <= 0"]\n')
    settings = resolve_settings({}, {}, {}, suite_copy)
    with get_backend("llamacpp").serve(settings.server, SMOLLM2, suite_copy / "engine") as served:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "perf/test_concurrency.py", "-p", "no:cacheprovider",
             "--backend", "openai", "--base-url", served.endpoint.base_url,
             "--model", served.endpoint.model, "--llmperf-requests=32",
             "--llmperf-max-tokens=16", "--junitxml=junit.xml"],
            cwd=suite_copy, capture_output=True, text=True, timeout=300, check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    properties = {p.get("name"): p.get("value")
                  for p in ET.parse(suite_copy / "junit.xml").iter("property")}
    assert (properties["llmperf.completed"], properties["llmperf.failed"]) == ("32.0", "0.0")

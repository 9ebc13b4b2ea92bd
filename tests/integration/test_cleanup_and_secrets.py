"""A launched engine outlives nothing and leaks nothing, with real processes throughout.

The session that launched the embedded llama.cpp engine (the ``xllamacpp_server`` process) may
end badly: a user's test raises after the server is up, a test calls ``os._exit`` so that no
teardown runs at all, or a pytest-xdist worker is SIGKILLed mid-load.  In every case the engine
must be gone within a bounded wait.  And an API key named by ``--api-key-env`` must appear in
no output of a launched run: terminal, report, JUnit XML, results, charts or the engine's log;
nor in any output of a run that fails: a --base-url with credentials, a query or a fragment, a
key pasted where its variable's name belongs or one with a line break (each refused before any
server starts), a server that answers 401 at readiness or to every request, one whose tokenizer
fails so that every answer's token count fails, and one that dies mid-load.  The scripted
server of those runs (tests/fakes/secrets_stub.py) echoes the key in every error it sends.

(Interrupting a whole session with SIGINT/SIGTERM, and the key with an *attached* server, are
covered in test_suite_end_to_end.py; this module reuses its suite copy and engine lookup.)
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import psutil
import pytest
import requests

from pytest_llmperf.engines.lifecycle import free_port
from tests.integration import test_suite_end_to_end as end_to_end
from tests.integration.test_suite_end_to_end import FAST, SECRET, _engines_under

pytestmark = [pytest.mark.integration, pytest.mark.slow]

suite_copy = end_to_end.suite_copy  # the shipped suite in tmp_path, as a user runs it

ENGINE_START_S = 120.0  # a busy 2-core machine: launch, load SmolLM2, first /health
PARENT_GONE_S = 30.0  # the launcher polls its parent every 0.5 s; generous for a loaded box

LENIENT = '[defaults]\nslo = ["error_rate <= 0.01", "ttft_ms.p95 < 60000", "tpot_ms.p95 < 5000"]\n'

# A user's perf test that dies once the server is up and has served a load.  It says which
# engine it was given, then waits for the harness to have seen that engine, so that the
# harness records the engine while it is certainly alive.
CRASHING_TEST = '''\
"""A user's perf test with a bug: it dies after the load."""
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def test_dies_after_the_load(llmperf_server, llmperf_load):
    llmperf_load(users=1)
    (HERE / "engine.pid.partial").write_text(str(llmperf_server.server_pid))
    os.replace(HERE / "engine.pid.partial", HERE / "engine.pid")  # seen whole or not at all
    deadline = time.monotonic() + 60
    while not (HERE / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    {crash}
'''


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie.  An orphan re-parented to this container's init stays a zombie
    (that init reaps nothing); it holds no memory, port or CPU, so it counts as gone."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _still_running(processes: Sequence[psutil.Process], within_s: float) -> list[psutil.Process]:
    """Those of ``processes`` still running after at most ``within_s`` seconds."""
    psutil.wait_procs(processes, timeout=0)  # reaps any that are our own children
    deadline = time.monotonic() + within_s
    while True:
        alive = [p for p in processes if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)


def _kill_all(processes: Sequence[psutil.Process]) -> None:
    """Clean up after a failed assertion: these were launched by the session under test."""
    for process in processes:
        if _running(process):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
    psutil.wait_procs(processes, timeout=5)


def _wait_for(what: str, predicate: Callable[[], bool], session: subprocess.Popen[bytes],
              console: IO[bytes], timeout_s: float = ENGINE_START_S) -> None:
    """Poll ``predicate`` while ``session`` runs; fail, showing its output, if the session
    ends or time runs out first."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if session.poll() is not None:
            pytest.fail(f"the session ended (rc {session.returncode}) before {what}:\n"
                        f"{_text(console)}")
        if time.monotonic() >= deadline:
            pytest.fail(f"no {what} within {timeout_s:g} s:\n{_text(console)}")
        time.sleep(0.2)


def _port_of(engine: psutil.Process) -> int:
    argv = engine.cmdline()
    return int(argv[argv.index("--port") + 1])


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def console(tmp_path: Path) -> Iterator[IO[bytes]]:
    """Where a session's stdout and stderr go (a file: a pipe nobody reads could block it)."""
    with (tmp_path / "console.txt").open("w+b") as log:
        yield log


def _text(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")


@pytest.mark.parametrize(
    ("crash", "exit_code", "within_s"),
    [
        # pytest's own teardown stops the engine, and stop() returns only once it is gone.
        ('raise RuntimeError("planted bug in a user test")', 1, 0.0),
        # No teardown, no atexit: only the launcher's parent watch can end the engine.
        ("os._exit(3)", 3, PARENT_GONE_S),
    ],
    ids=["raises", "os-exit"],
)
def test_a_test_that_dies_leaves_no_engine(suite_copy: Path, console: IO[bytes], crash: str,
                                           exit_code: int, within_s: float) -> None:
    (suite_copy / "perf" / "test_dies.py").write_text(CRASHING_TEST.format(crash=crash))
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "perf/test_dies.py", *FAST],
        cwd=suite_copy, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
    )
    engines: list[psutil.Process] = []
    try:
        pid_file = suite_copy / "engine.pid"
        _wait_for("engine pid from the test", pid_file.exists, session, console)
        engines = _engines_under(session.pid)
        served_pid = int(pid_file.read_text())
        assert served_pid in [e.pid for e in engines], (served_pid, engines)
        assert all(_running(e) for e in engines)
        (suite_copy / "go").touch()
        assert session.wait(timeout=60) == exit_code, _text(console)
        if exit_code == 1:
            assert "RuntimeError: planted bug in a user test" in _text(console)
        alive = _still_running(engines, within_s)
        assert not alive, (f"engine outlived the session by {within_s:g} s: "
                           f"{[p.pid for p in alive]}\n{_text(console)}")
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
        _kill_all(engines)


def test_killed_xdist_worker_leaves_no_engine(suite_copy: Path, console: IO[bytes]) -> None:
    controller = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "1", "--max-worker-restart=0",
         "perf/test_latency.py", "--llmperf-requests=500", "-p", "no:cacheprovider"],
        cwd=suite_copy, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
    )
    engines: list[psutil.Process] = []
    try:
        def engine_started() -> bool:
            engines[:] = _engines_under(controller.pid)
            return bool(engines)

        _wait_for("engine under the xdist worker", engine_started, controller, console)
        assert len(engines) == 1, engines
        engine = engines[0]
        # The engine's parent is its guard (engines/guard.py); the guard's is the launcher:
        # the worker, a child of the controller (not the controller).
        guard = engine.parent()
        assert guard is not None and "guard.py" in " ".join(guard.cmdline()), guard
        engines.append(guard)  # it must go too
        worker = guard.parent()
        assert worker is not None and worker.ppid() == controller.pid, (worker, controller.pid)
        argv = engine.cmdline()
        assert argv[argv.index("--parent-pid") + 1] == str(worker.pid), argv
        port = _port_of(engine)
        _wait_for("ready engine", lambda: _ready(port), controller, console)
        time.sleep(3)  # let the 500-request load run
        assert controller.poll() is None, "the load ended before the worker was killed"

        worker.send_signal(signal.SIGKILL)
        alive = _still_running(engines, PARENT_GONE_S)
        assert not alive, (f"engine outlived its killed xdist worker by {PARENT_GONE_S:g} s: "
                           f"{[p.pid for p in alive]}")
        assert not _ready(port), "the engine's port still answers"
        rc = controller.wait(timeout=60)
        out = _text(console)
        assert rc == 1, out
        assert "crashed" in out, out
        assert _engines_under(controller.pid) == []
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
        _kill_all(engines)


def test_launched_run_writes_the_api_key_nowhere(suite_copy: Path) -> None:
    # Limits any busy 2-core machine meets: the run is to pass, and to write all its outputs.
    (suite_copy / "thresholds.toml").write_text(LENIENT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_latency.py", *FAST,
         "--api-key-env", "LLMPERF_TEST_KEY", "--llmperf-report=report.md",
         "--junitxml=junit.xml"],
        cwd=suite_copy, capture_output=True, timeout=300, check=False,
        env={**os.environ, "LLMPERF_TEST_KEY": SECRET},
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console.decode(errors="replace")
    assert b"1 passed" in done.stdout, console.decode(errors="replace")

    # Not vacuous: every output the run is known to write is there, the engine's log included.
    output = suite_copy / "llmperf-output"
    for written in (suite_copy / "report.md", suite_copy / "junit.xml",
                    output / "results.json"):
        assert written.is_file() and written.stat().st_size > 0, written
    assert list(output.glob("*.png")), sorted(output.iterdir())
    engine_logs = list(output.glob("llamacpp-*.log"))
    assert len(engine_logs) == 1, sorted(output.iterdir())
    engine_log = engine_logs[0].read_bytes()
    assert b"pytest-llmperf: serving " in engine_log, engine_log[-2000:]

    files = [path for path in suite_copy.rglob("*") if path.is_file()]
    assert engine_logs[0] in files
    assert SECRET.encode() not in console
    leaked = [str(path.relative_to(suite_copy)) for path in files
              if SECRET.encode() in path.read_bytes()]
    assert leaked == [], f"the API key was written to {leaked}"


KILLED_SERVER_TESTS = '''\
"""The engine is killed after the first test; the second finds it started again."""
import os
import signal
import time


def test_1_the_engine_dies(llmperf_server, llmperf_load):
    llmperf_load(users=1, requests=2)
    os.kill(llmperf_server.server_pid, signal.SIGKILL)
    # Until the engine's guard has seen it exit (every thread gone), as the next test's
    # check will: the engine is the guard's child, not this process's.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            llmperf_server.check_alive()
        except Exception:
            break
        time.sleep(0.05)


def test_2_after_the_crash(llmperf_load, llmperf_slo):
    result = llmperf_load(users=1, requests=4)
    llmperf_slo.check(result)
    assert result.run.records and all(r.ok for r in result.run.records)
'''


def test_a_killed_engine_is_started_again_for_the_next_test(suite_copy: Path) -> None:
    (suite_copy / "thresholds.toml").write_text(LENIENT)
    (suite_copy / "perf" / "test_killed.py").write_text(KILLED_SERVER_TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_killed.py", "-p", "no:cacheprovider",
         "--llmperf-warmup=1", "-s"],
        cwd=suite_copy, capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "2 passed" in out
    assert "the server died in an earlier test (llamacpp exited with code -9 after it was " \
           "ready); started it again, once (pid " in out, out
    logs = sorted(path.name for path in (suite_copy / "llmperf-output").glob("llamacpp-*.log"))
    assert any(name.endswith(".died.log") for name in logs), logs  # the dead run's log kept
    assert len(logs) == 2, logs


# --- the key on failure paths ---------------------------------------------------------------

SECRETS_STUB = Path(__file__).resolve().parents[1] / "fakes" / "secrets_stub.py"
URL_SECRET = "pw-llmperf-url-secret-2718"  # planted in a --base-url
# Keys that are valid variable names, so that only the "not set" check can meet them.
KEY_AS_NAME = "hf_LlmperfPastedKeyNotAName0123456789"


def _forms(secret: str) -> list[bytes]:
    """The secret as it could be written: plain, and as requests' Basic auth of a URL."""
    basic = base64.b64encode(f"user:{secret}".encode())
    return [secret.encode(), basic]


def _assert_written_nowhere(suite: Path, console: bytes, secrets: Sequence[str]) -> None:
    files = [path for path in suite.rglob("*") if path.is_file()]
    for secret in secrets:
        for form in _forms(secret):
            assert form not in console, console.decode(errors="replace")
            leaked = [str(path.relative_to(suite)) for path in files
                      if form in path.read_bytes()]
            assert leaked == [], f"{form!r} was written to {leaked}"


def _session(suite: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[bytes]:
    """The suite's latency test with every output on: report, JUnit XML, step summary."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_latency.py", *FAST,
         "--llmperf-report=report.md", "--junitxml=junit.xml", "--showlocals", *args],
        cwd=suite, capture_output=True, timeout=300, check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": str(suite / "step-summary.md"),
             **(env or {})},
    )


@contextlib.contextmanager
def _secrets_stub(mode: str, logs: Path) -> Iterator[str]:
    """tests/fakes/secrets_stub.py in ``mode``; yields its /v1 URL once it answers at all."""
    port = free_port()
    with (logs / f"stub-{mode}.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, str(SECRETS_STUB), str(port), mode],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(requests.RequestException):
                    requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                assert process.poll() is None and time.monotonic() < deadline, \
                    (logs / f"stub-{mode}.log").read_text()
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--backend", "openai", "--base-url", f"http://user:{URL_SECRET}@127.0.0.1:9/v1"], {},
         "--api-key-env"),
        (["--backend", "openai"], {"LLMPERF_BASE_URL": f"http://127.0.0.1:9/v1?key={URL_SECRET}"},
         "--api-key-env"),
        (["--backend", "openai", "--base-url", f"http://127.0.0.1:9/v1#{URL_SECRET}"], {},
         "--api-key-env"),
        (["--backend", "openai", "--base-url", f"htp://user:{URL_SECRET}@127.0.0.1:9/v1"], {},
         "expected an http:// or https:// URL"),
        (["--api-key-env", KEY_AS_NAME], {}, "its name is not shown"),
        (["--api-key-env", "LLMPERF_TEST_KEY"], {"LLMPERF_TEST_KEY": URL_SECRET + "\n"},
         "the API key in environment variable LLMPERF_TEST_KEY holds a line break"),
    ],
    ids=["url-userinfo", "url-query-env", "url-fragment", "bad-url-with-userinfo",
         "key-as-variable-name", "key-with-newline"],
)
def test_a_refused_setting_writes_the_secret_nowhere(
    suite_copy: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    done = _session(suite_copy, *args, env=env)
    console = done.stdout + done.stderr
    assert done.returncode == 4, console.decode(errors="replace")  # a usage error, at once
    assert said.encode() in console, console.decode(errors="replace")
    _assert_written_nowhere(suite_copy, console, [URL_SECRET, KEY_AS_NAME])


@pytest.mark.parametrize(
    ("mode", "backend", "said"),
    [
        # Readiness answered 401: the test errors before any load.
        ("deny", "openai", b"answered HTTP 401"),
        # Ready, then every request answered 401: a run of failed requests, reported.
        ("deny-load", "openai", b"http_4xx"),
        # The same, the 401's body quoting the key: the client keeps error bodies in records.
        ("deny-load-echo", "openai", b"http_4xx"),
        # Every answer's token count fails with the tokenizer's 401: stored in each record.
        ("count-fail", "llamacpp", b"counting tokens with the model's tokenizer failed"),
        # The server dies mid-answer: the rest cannot connect (whether that is "connection" or
        # "server_died" depends on when the death is seen: the count is the same).
        ("die", "openai", b"4 of 4 requests failed"),
    ],
)
def test_a_failing_server_run_writes_the_key_nowhere(
    suite_copy: Path, tmp_path_factory: pytest.TempPathFactory, mode: str, backend: str,
    said: bytes,
) -> None:
    (suite_copy / "thresholds.toml").write_text(LENIENT)
    with _secrets_stub(mode, tmp_path_factory.mktemp("stub")) as url:
        done = _session(suite_copy, "--backend", backend, "--base-url", url,
                        "--api-key-env", "LLMPERF_TEST_KEY", env={"LLMPERF_TEST_KEY": SECRET})
    console = done.stdout + done.stderr
    text = console.decode(errors="replace")
    assert done.returncode == 1, text
    # Not vacuous: the run wrote its outputs, and they tell of the failure.
    junit = suite_copy / "junit.xml"
    assert junit.is_file(), text
    written = [junit]
    if mode != "deny":  # the others get to measure
        written += [suite_copy / "report.md", suite_copy / "step-summary.md",
                    suite_copy / "llmperf-output" / "results.json"]
    for path in written:
        assert path.is_file() and path.stat().st_size > 0, (path, text)
    everything = console + b"".join(path.read_bytes() for path in written)
    assert said in everything, text
    _assert_written_nowhere(suite_copy, console, [SECRET])

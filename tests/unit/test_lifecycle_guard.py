"""No engine process outlives its launcher: the guard ends the whole tree, detached helpers too.

The engine is ``tests/fakes/fake_engine.py`` with a worker in its process group and a detached
helper (a session of its own, forked twice, ignoring SIGHUP: as Ray's daemons are).  It is
stopped the ordinary way, or its launching process (a small script, in a session of its own)
is sent SIGKILL, SIGHUP or SIGTERM; in every case each process of the launcher's tree must be
gone within a bounded wait.  "Gone" means not running: a zombie holds no port, memory or GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from pytest_llmperf.engines.lifecycle import ManagedServer, free_port, stop_all_servers
from tests.fakes.signals import default_signals

REPO = Path(__file__).resolve().parents[2]
FAKE_ENGINE = REPO / "tests" / "fakes" / "fake_engine.py"
GONE_WITHIN_S = 30.0  # a bound, not a timing: each case ends in about a second


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def still_running(pids: Sequence[int], within_s: float = GONE_WITHIN_S) -> list[int]:
    """Those of ``pids`` still running after at most ``within_s`` (zombies are reaped when
    they are ours)."""
    deadline = time.monotonic() + within_s
    while True:
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        alive = [pid for pid in pids if running(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        if running(pid):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def wait_for_file(path: Path, within_s: float = 30.0) -> str:
    deadline = time.monotonic() + within_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
    return path.read_text()


def fake_argv(tmp_path: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE_ENGINE), str(port), "--fork-worker",
            str(tmp_path / "worker.pid"), "--detach-helper", str(tmp_path / "helper.pid"),
            *extra]


def fake_server(tmp_path: Path, *extra: str, stop_grace_s: float = 1.0) -> ManagedServer:
    port = free_port()
    return ManagedServer("stub-engine", fake_argv(tmp_path, port, *extra),
                         health_url=f"http://127.0.0.1:{port}/health",
                         log_path=tmp_path / "logs" / "stub-engine.log",
                         ready_timeout_s=30.0, stop_grace_s=stop_grace_s)


@pytest.fixture
def no_leftovers() -> Iterator[list[int]]:
    """Pids a test must leave gone; fails the test (and kills them) otherwise."""
    watched: list[int] = []
    yield watched
    stop_all_servers()
    left = still_running(watched, 5.0)
    kill_all(left)
    assert left == [], f"processes left running: {left}"


def test_stop_ends_the_detached_helper_too(tmp_path: Path, no_leftovers: list[int]) -> None:
    with fake_server(tmp_path) as server:
        assert server.pid is not None
        worker = int(wait_for_file(tmp_path / "worker.pid"))
        helper = int(wait_for_file(tmp_path / "helper.pid"))
        no_leftovers.extend([server.pid, worker, helper])
        assert os.getsid(helper) != os.getsid(server.pid)  # it escaped the engine's session
        assert running(helper)
    assert still_running([server.pid, worker, helper], 0.0) == []


def test_an_engine_that_exits_leaves_no_helper_after_stop(
        tmp_path: Path, no_leftovers: list[int]) -> None:
    server = fake_server(tmp_path, "--die-after", "0.3", "5")
    with server:
        assert server.process is not None and server.pid is not None
        worker = int(wait_for_file(tmp_path / "worker.pid"))
        helper = int(wait_for_file(tmp_path / "helper.pid"))
        no_leftovers.extend([server.pid, worker, helper])
        assert server.process.wait(timeout=30) == 5
    assert still_running([server.pid, worker, helper], 0.0) == []


def test_an_engine_whose_guard_died_is_still_ended(tmp_path: Path,
                                                   no_leftovers: list[int]) -> None:
    """Without its guard (killed: say by the OOM killer) stop() ends the engine's session,
    which this process, a subreaper, has adopted."""
    port = free_port()
    server = ManagedServer("stub-engine", [sys.executable, str(FAKE_ENGINE), str(port),
                                           "--ignore-sigterm", "--fork-worker",
                                           str(tmp_path / "worker.pid")],
                           health_url=f"http://127.0.0.1:{port}/health",
                           log_path=tmp_path / "stub-engine.log", stop_grace_s=1.0)
    with server:
        assert server.process is not None and server.pid is not None
        worker = int(wait_for_file(tmp_path / "worker.pid"))
        no_leftovers.extend([server.pid, worker])
        server.process.guard.kill()
        assert server.process.wait(timeout=30) == -9  # as good as lost: it is not watched
    assert still_running([server.pid, worker], 0.0) == []


LAUNCHER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from pytest_llmperf.engines.lifecycle import ManagedServer, free_port

    here, fake = Path(sys.argv[1]), sys.argv[2]
    port = free_port()
    server = ManagedServer(
        "stub-engine",
        [sys.executable, fake, str(port), "--fork-worker", str(here / "worker.pid"),
         "--detach-helper", str(here / "helper.pid")],
        health_url=f"http://127.0.0.1:{port}/health", log_path=here / "engine.log",
        ready_timeout_s=30.0, stop_grace_s=1.0)
    server.__enter__()
    while not (here / "helper.pid").exists():
        time.sleep(0.05)
    pids = {"engine": server.pid, "worker": int((here / "worker.pid").read_text()),
            "helper": int((here / "helper.pid").read_text())}
    (here / "pids.partial").write_text(json.dumps(pids))
    (here / "pids.partial").replace(here / "pids.json")
    time.sleep(600)
""")


def launch_and_signal(tmp_path: Path, sig: signal.Signals) -> None:
    """A launcher holding an engine gets ``sig``: nothing of its tree may stay running."""
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    launcher = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(FAKE_ENGINE)],
                                cwd=REPO, start_new_session=True, preexec_fn=default_signals,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree: list[int] = []
    try:
        pids = json.loads(wait_for_file(tmp_path / "pids.json"))
        tree = sorted({*pids.values(), *(p.pid for p in
                                         psutil.Process(launcher.pid).children(recursive=True))})
        assert all(running(pid) for pid in tree)
        launcher.send_signal(sig)
        assert launcher.wait(timeout=60) == -sig
        left = still_running(tree)
        assert left == [], (f"{sig.name}: still running {GONE_WITHIN_S:g} s after the "
                            f"launcher ended: {left} of {pids}, tree {tree}")
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        kill_all(tree)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP, signal.SIGTERM],
                         ids=lambda s: s.name)
def test_a_launcher_that_dies_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    launch_and_signal(tmp_path, sig)

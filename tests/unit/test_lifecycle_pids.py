"""A pid the kernel may have handed to another process is never signalled.

An engine that exited was reaped by ``check_running`` (``Popen.poll``), and ``stop`` then sent
SIGTERM and SIGKILL to its process group by number: once the group was empty that number was
free, and a new process that took it as its pid and made itself a group leader (any daemon,
any ``start_new_session``) was killed.  Two proofs: every signal this process sends goes to a
child it has not reaped (so its pid cannot have been reused), and, where this machine lets us
choose the next pid (``/proc/sys/kernel/ns_last_pid``, root), a process given exactly the dead
engine's pid survives ``stop``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_llmperf.engines.lifecycle import ManagedServer, ServerExited, free_port
from tests.unit.test_lifecycle_guard import FAKE_ENGINE, running

NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def exits_after_ready(tmp_path: Path) -> ManagedServer:
    port = free_port()
    return ManagedServer("stub-engine",
                         [sys.executable, str(FAKE_ENGINE), str(port), "--die-after", "0.2", "0"],
                         health_url=f"http://127.0.0.1:{port}/health",
                         log_path=tmp_path / "stub-engine.log", ready_timeout_s=30.0,
                         stop_grace_s=1.0)


def wait_until_exited(server: ManagedServer) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            server.check_running()
        except ServerExited:
            return
        assert time.monotonic() < deadline, "the engine never exited"
        time.sleep(0.05)


def unreaped_child(pid: int) -> bool:
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def test_only_unreaped_children_are_signalled(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, int, int]] = []
    stray: list[tuple[str, int, int]] = []
    real_kill, real_killpg = os.kill, os.killpg

    def kill(pid: int, sig: int) -> None:
        if sig:
            (sent if unreaped_child(pid) else stray).append(("kill", pid, sig))
        real_kill(pid, sig)

    def killpg(pgid: int, sig: int) -> None:
        if sig:
            (sent if unreaped_child(pgid) else stray).append(("killpg", pgid, sig))
        real_killpg(pgid, sig)

    server = exits_after_ready(tmp_path)
    with server:
        monkeypatch.setattr(os, "kill", kill)
        monkeypatch.setattr(os, "killpg", killpg)
        wait_until_exited(server)
    monkeypatch.undo()
    assert stray == [], f"signals to a pid that may have been reused: {stray}"
    assert sent, "stop() signalled nothing"


def _process_with_pid(pid: int) -> subprocess.Popen[bytes] | None:
    """A sleeping group leader whose pid is ``pid``, if this machine lets us pick it."""
    for _ in range(20):
        try:
            NS_LAST_PID.write_text(str(pid - 1))
        except OSError:
            return None
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                  start_new_session=True)
        if victim.pid == pid:
            return victim
        victim.kill()  # another process forked in between: try again
        victim.wait()
    return None


def test_a_process_that_got_the_dead_engines_pid_survives_stop(tmp_path: Path) -> None:
    if not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip("the next pid cannot be chosen here (/proc/sys/kernel/ns_last_pid)")
    server = exits_after_ready(tmp_path)
    victim = None
    try:
        server.__enter__()
        engine = server.pid
        assert engine is not None
        wait_until_exited(server)
        victim = _process_with_pid(engine)
        if victim is None:
            # Not free: something still holds the number (the engine's zombie, kept unreaped
            # until stop() is done with it); then no other process can be given it.
            with contextlib.suppress(psutil.NoSuchProcess):
                assert psutil.Process(engine).status() == psutil.STATUS_ZOMBIE
            server.stop()
            return
        assert os.getpgid(victim.pid) == engine  # it leads a group of the engine's number
        server.stop()
        assert running(victim.pid), f"stop() killed pid {engine}, which an unrelated process " \
                                    "had been given after the engine exited"
    finally:
        server.stop()
        if victim is not None:
            victim.kill()
            victim.wait()

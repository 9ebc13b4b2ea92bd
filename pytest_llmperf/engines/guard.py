"""The guard of one launched engine: ``python -I -S guard.py STATUS_FD``, its spec on stdin.

:class:`pytest_llmperf.engines.guarded.EngineProcess` starts it; it starts the engine.  The
guard is the engine's parent and, on Linux, a child subreaper: every process of the engine's
tree stays in the guard's tree, detached ones included (a helper in a session of its own, a
daemon that forked twice, Ray's), so that it can end them all.  It ends the whole tree (SIGTERM,
then SIGKILL after the grace period) and exits when

- it is told to stop: SIGTERM (what ``ManagedServer.stop`` sends), SIGHUP or SIGINT;
- the process that launched it is gone, however it died (SIGKILL, OOM killer, a dropped ssh
  session): a pidfd on it says so at once (a poll of our parent pid where there is none).

When the engine exits on its own the guard reports it at once and leaves what remains of its
tree until one of the above (the launching process reads the log and the exit code first).

Spec (JSON on stdin): ``{"argv": [...], "grace_s": 10.0, "watch": PID}``.  Reports on
STATUS_FD, a line each: ``pid N`` once the engine runs (``error ERRNO TEXT`` when it could not
be started), ``exit CODE`` when it has exited (negative: the signal that ended it, as
subprocess says).  Standard library only: it runs outside the package (``-I -S``).

No pid is signalled that could have been reused: the engine stays an unreaped child (its zombie
holds its pid and so its process group) until its tree is gone, and every other process is
signalled through a pidfd opened once its start time is checked.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import NamedTuple

__all__ = ["Guard", "Proc", "descendants", "main", "read_proc", "send"]

_PR_SET_CHILD_SUBREAPER = 36
_TICK_S = 0.05
_WATCH_POLL_S = 0.5  # how often the launching process is looked for where no pidfd tells
_KILL_WAIT_S = 10.0  # after SIGKILL, how long dying processes (in the kernel, GPU teardown) get
_STOP = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT})


class Proc(NamedTuple):
    pid: int
    ppid: int
    state: str  # "Z": a zombie
    start: int  # start time in clock ticks since boot: with the pid, names one process


def read_proc(pid: int) -> Proc | None:
    """``/proc/PID/stat``'s fields we use; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # the name, in (), may hold anything
    return Proc(pid, int(fields[1]), fields[0].decode(), int(fields[19]))


def descendants(root: int) -> list[Proc]:
    """Every process under ``root`` (zombies included); empty where there is no /proc."""
    children: dict[int, list[Proc]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if name.isdigit():
            proc = read_proc(int(name))
            if proc is not None:
                children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child.pid)
    return found


def send(proc: Proc, sig: int) -> None:
    """``sig`` to ``proc`` if that very process is still there (not a reuse of its pid)."""
    fd = None
    with contextlib.suppress(OSError, AttributeError):
        fd = os.pidfd_open(proc.pid)
    try:
        now = read_proc(proc.pid)
        if now is None or now.start != proc.start:
            return
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if fd is not None:
            os.close(fd)


class Guard:
    """One engine and its tree; see the module docstring."""

    def __init__(self, argv: list[str], grace_s: float, watch: int, status_fd: int) -> None:
        self.argv, self.grace_s, self.watch, self.status_fd = argv, grace_s, watch, status_fd
        self.me = os.getpid()
        self.engine: subprocess.Popen[bytes] | None = None
        self.reported = False  # the engine's exit
        self.wake_r, wake_w = os.pipe()
        for fd in (self.wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)  # each signal's number arrives here as a byte
        for sig in (*_STOP, signal.SIGCHLD):
            signal.signal(sig, lambda *_: None)

    def report(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the launching process may be gone
            os.write(self.status_fd, f"{line}\n".encode())

    def run(self) -> int:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        watch_fd = None
        with contextlib.suppress(OSError, AttributeError):
            watch_fd = os.pidfd_open(self.watch)
        if os.getppid() != self.watch:  # gone before we could watch it: start nothing
            return 0
        try:
            self.engine = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
        except OSError as exc:
            self.report(f"error {exc.errno or 0} {exc.strerror or exc}")
            return 127
        self.report(f"pid {self.engine.pid}")
        if self.wait_for_a_reason(watch_fd):
            print(f"pytest-llmperf: the process that launched this engine (pid {self.watch}) "
                  "is gone; stopping the engine", flush=True)
        return 0 if self.end_tree() else 1  # 1: some would not die; the launcher sweeps

    def wait_for_a_reason(self, watch_fd: int | None) -> bool:
        """Until told to stop (False) or the launching process is gone (True)."""
        while True:
            watched = [self.wake_r] if watch_fd is None else [self.wake_r, watch_fd]
            ready, _, _ = select.select(watched, [], [],
                                        _WATCH_POLL_S if watch_fd is None else 5.0)
            got = self.drain()
            self.check_engine()
            if signal.SIGCHLD in got:
                self.reap_others()
            if got & _STOP:
                return False
            if (watch_fd is not None and watch_fd in ready) or os.getppid() != self.watch:
                return True

    def drain(self) -> set[int]:
        got: set[int] = set()
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self.wake_r, 512):
                got.update(data)
        return got

    def engine_code(self) -> int | None:
        """The engine's exit code once it has exited; it stays unreaped (WNOWAIT)."""
        assert self.engine is not None
        if self.engine.returncode is not None:
            return self.engine.returncode
        try:
            info = os.waitid(os.P_PID, self.engine.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return None
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def check_engine(self) -> None:
        code = self.engine_code()
        if code is not None and not self.reported:
            self.reported = True
            self.report(f"exit {code}")

    def reap_others(self) -> None:
        """Reap our children that have exited (orphans re-parented to us), the engine aside."""
        assert self.engine is not None
        for proc in descendants(self.me):
            if proc.ppid == self.me and proc.state == "Z" and proc.pid != self.engine.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, os.WNOHANG)

    def left(self) -> list[Proc]:
        """What is left of the tree, the engine's zombie aside."""
        assert self.engine is not None
        engine_done = self.engine_code() is not None
        if not os.path.isdir(f"/proc/{self.me}"):  # no /proc: only the engine is known
            return [] if engine_done else [Proc(self.engine.pid, self.me, "R", 0)]
        return [p for p in descendants(self.me)
                if not (p.pid == self.engine.pid and engine_done)]

    def signal_tree(self, sig: int) -> None:
        assert self.engine is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.engine.pid, sig)  # safe: the engine's pid is ours until reaped
        for proc in self.left():
            if proc.state != "Z" and proc.pid != self.engine.pid:
                send(proc, sig)

    def wait_tree(self, until: float) -> bool:
        """Until nothing is left (True) or ``until`` (False), reaping as they go."""
        while True:
            self.reap_others()
            self.check_engine()
            if not self.left():
                return True
            if time.monotonic() >= until:
                return False
            time.sleep(_TICK_S)

    def end_tree(self) -> bool:
        """SIGTERM, the grace period, then SIGKILL until nothing is left (True) or the wait
        after SIGKILL is over (False); reap the engine."""
        assert self.engine is not None
        self.signal_tree(signal.SIGTERM)
        if not self.wait_tree(time.monotonic() + self.grace_s):
            until = time.monotonic() + max(self.grace_s, _KILL_WAIT_S)
            while True:  # again and again: a dying process may still fork
                self.signal_tree(signal.SIGKILL)
                if self.wait_tree(min(until, time.monotonic() + 0.5)):
                    break
                if time.monotonic() >= until:
                    left = [p.pid for p in self.left()]
                    print(f"pytest-llmperf: processes {left} did not end after SIGKILL",
                          flush=True)
                    break
        self.check_engine()
        if self.engine_code() is not None:  # else it never died (stuck in the kernel)
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(self.engine.pid, 0)
                self.engine.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        return not self.left()


def main() -> int:
    status_fd = int(sys.argv[1])
    spec = json.loads(sys.stdin.buffer.read())
    return Guard([str(a) for a in spec["argv"]], float(spec["grace_s"]), int(spec["watch"]),
                 status_fd).run()


if __name__ == "__main__":
    sys.exit(main())

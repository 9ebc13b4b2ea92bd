"""A launched engine as this process sees it: started under its guard (engines/guard.py).

:class:`EngineProcess` starts the guard, which starts the engine, and reads what the guard
reports: the engine's pid, then its exit code.  ``stop`` asks the guard (SIGTERM) to end the
engine's whole tree; the guard does, then exits.  This process signals nothing but the guard,
its own child, and only while it is unreaped, so a pid the kernel has handed to another
process since is never signalled.  Should the guard itself be gone or hang, ``stop`` ends
what is left of the engine's session.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

__all__ = ["GUARD", "EngineProcess", "GuardError"]

GUARD = Path(__file__).with_name("guard.py")
_GUARD_START_S = 60.0  # a Python start on a busy machine, well within
_GUARD_EXTRA_S = 15.0  # on top of its two grace periods before the guard counts as hung


class GuardError(RuntimeError):
    """The guard ended before it started the engine (its log has why)."""


class EngineProcess:
    """The engine under its guard: ``pid``, ``returncode``, ``poll()``, ``wait()`` as
    :class:`subprocess.Popen` has them, and ``stop()``."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None, log: IO[bytes],
                 grace_s: float) -> None:
        self.args = list(argv)
        self.grace_s = grace_s
        self.pid = -1  # the engine's, once the guard has started it
        self.returncode: int | None = None
        self._buffer = b""
        status_r, status_w = os.pipe()
        try:
            self.guard = subprocess.Popen(
                [sys.executable, "-I", "-S", str(GUARD), str(status_w)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None, start_new_session=True,
                pass_fds=(status_w,))
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        self._status: int | None = status_r
        assert self.guard.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.guard.stdin.write(json.dumps(
                {"argv": self.args, "grace_s": grace_s, "watch": os.getpid()}).encode())
        with contextlib.suppress(BrokenPipeError):
            self.guard.stdin.close()
        self.pid = self._started()

    def _started(self) -> int:
        deadline = time.monotonic() + _GUARD_START_S
        while True:
            lines = self._read(max(0.0, deadline - time.monotonic()))
            for at, line in enumerate(lines):
                kind, _, rest = line.partition(" ")
                if kind == "pid":
                    self._take(lines[at + 1:])  # an engine that exited at once says so too
                    return int(rest)
                if kind == "error":
                    number, _, text = rest.partition(" ")
                    self.stop()
                    raise OSError(int(number), text, self.args[0])
            if self._status is None or time.monotonic() >= deadline:
                self.stop()
                raise GuardError(f"the engine's guard ended before it started the engine "
                                 f"(exit code {self.guard.returncode})")

    def _read(self, timeout: float) -> list[str]:
        """The whole lines the guard has sent, waiting up to ``timeout`` for the first."""
        if self._status is None:
            return []
        poller = select.poll()  # not select(): past 1024 open sockets its fds fail
        poller.register(self._status, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return []
        data = os.read(self._status, 4096)
        if not data:  # the guard is gone
            os.close(self._status)
            self._status = None
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode() for line in lines]

    def _take(self, lines: list[str]) -> None:
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "exit" and self.returncode is None:
                self.returncode = int(rest)
        if self._status is None and self.returncode is None:
            # The guard died without a word (killed): the engine is as good as lost.
            self.returncode = self.guard.wait()

    def poll(self) -> int | None:
        """The engine's exit code once it has exited, else None; never waits."""
        while self.returncode is None:
            lines = self._read(0.0)
            self._take(lines)
            if not lines:
                break
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self._take(self._read(0.5 if left is None else min(left, 0.5)))
        assert self.returncode is not None
        return self.returncode

    def tree(self) -> list[int]:
        """The guard and every process under it, the engine's whole tree."""
        try:
            guard = psutil.Process(self.guard.pid)
            return [guard.pid, *(p.pid for p in guard.children(recursive=True))]
        except psutil.Error:
            return []

    def stop(self) -> None:
        """The engine's whole tree ended (the guard's grace period, then SIGKILL); returns once
        the guard has seen it gone.  Safe to call twice."""
        if self.guard.poll() is None:
            self.guard.send_signal(signal.SIGTERM)  # an unreaped child: its pid is its own
        try:
            self.guard.wait(timeout=2 * self.grace_s + _GUARD_EXTRA_S)
        except subprocess.TimeoutExpired:
            self.guard.kill()
            self.guard.wait()
        while self._status is not None:  # its last words: the engine's exit code
            self._take(self._read(1.0))
        self._take([])
        if self.guard.returncode != 0:
            self._end_session()

    def _end_session(self) -> None:
        """Without its guard: SIGKILL what is left of the engine's session under us (a
        subreaper, we have adopted it); the session id stays taken while a member lives."""
        try:
            mine = psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        left = []
        for process in mine:
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(process.pid) == self.pid:
                    process.kill()
                    left.append(process)
        psutil.wait_procs(left, timeout=self.grace_s)  # reaps those that are our children

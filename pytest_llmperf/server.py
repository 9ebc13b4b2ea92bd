"""Server process lifecycle: launch, wait until ready, capture the log, tear down for sure.

Every engine runs as a child process in its own process group, so teardown reaches the workers
it forks: SIGTERM to the group, a grace period, then SIGKILL.  Live servers are also stopped at
interpreter exit and on SIGTERM, and the launched program is told our pid so that it can exit if
the test session dies without a chance to clean up.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

import requests

__all__ = ["ManagedServer", "ServerStartError", "free_port", "stop_all_servers"]

_LIVE: set[ManagedServer] = set()
_HANDLERS_INSTALLED = False


class ServerStartError(RuntimeError):
    """The server exited or never became ready; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ManagedServer:
    """One launched server process; ``with`` starts it, waits until ready and stops it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        health_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 120.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.health_url = health_url
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> ManagedServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        _install_handlers()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")  # a fresh log: old runs never pollute it
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        _LIVE.add(self)

    def wait_ready(self) -> None:
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {code} before it was ready\n"
                    f"{self.log_tail()}\nfull log: {self.log_path}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise ServerStartError(
            f"{self.name} was not ready at {self.health_url} within {self.ready_timeout_s:g} s\n"
            f"{self.log_tail()}\nfull log: {self.log_path}"
        )

    def stop(self) -> None:
        """SIGTERM the process group, wait, then SIGKILL; safe to call twice."""
        process = self.process
        if process is not None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.stop_grace_s)
            # Workers the engine forked may outlive its main process: kill the whole group.
            _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.stop_grace_s)
            # Return only once every member is gone: a dying worker may still hold the GPU
            # memory the next server needs.
            _wait_group_gone(process.pid, self.stop_grace_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = text.strip().splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in tail) or "(log is empty)"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return  # a member we may not signal is not ours to wait for
        time.sleep(0.05)


def stop_all_servers() -> None:
    for server in list(_LIVE):
        server.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    stop_all_servers()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    atexit.register(stop_all_servers)
    # Only the main thread may set handlers; keep one that someone else installed.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _on_sigterm)
    _HANDLERS_INSTALLED = True

"""Server process lifecycle: launch, wait until ready, capture the log, tear down for sure.

Every engine runs as a child process in its own process group, so teardown reaches the workers
it forks: SIGTERM to the group, a grace period, then SIGKILL, and :meth:`ManagedServer.stop`
returns only once no member of the group is left.  Live servers are also stopped at interpreter
exit and on SIGTERM, and the launched program is told our pid so that it can exit if the test
session dies without a chance to clean up.

On Linux this process becomes a child subreaper when it launches its first server: a worker
whose engine died is re-parented to us rather than to an init that may never reap it (a
container's init often does not), so that its zombie can be reaped and the group is really gone.

While a server loads, a progress line goes every ``progress_interval_s`` to the reporter set
with :func:`set_progress_reporter`.  A server that fails to start is searched for the log lines
that mean "out of memory" (:data:`DEFAULT_OOM_PATTERNS` plus the engine's own); if one is found
the error is :class:`ServerOutOfMemory` and says so plainly.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit

import requests

__all__ = [
    "DEFAULT_OOM_PATTERNS",
    "ManagedServer",
    "ServerExited",
    "ServerOutOfMemory",
    "ServerStartError",
    "free_port",
    "set_progress_reporter",
    "stop_all_servers",
]

# Log text that means "out of memory" whatever the engine; each engine adds its own.
DEFAULT_OOM_PATTERNS: tuple[str, ...] = (
    "CUDA out of memory",
    "torch.OutOfMemoryError",
    "OutOfMemoryError",
    "No available memory for the cache blocks",
    "requires more system memory",
    "cudaMalloc failed",
)

OOM_HINT = (
    "hint: ask for less (a smaller --llmperf-max-model-len or --llmperf-max-num-seqs), use more "
    "GPUs (--gpus, --llmperf-tp), or lower --llmperf-gpu-memory-utilization when other "
    "processes share the GPU"
)

_LIVE: set[ManagedServer] = set()
_HANDLERS_INSTALLED = False
_PROGRESS: Callable[[str], None] | None = None
_PROGRESS_LOG_CHARS = 80  # the last log line, shortened to this, in a progress line
_OOM_LINE_CHARS = 400
_LOG_SCAN_BYTES = 4 << 20  # the OOM search reads at most the log's last 4 MiB
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ServerStartError(RuntimeError):
    """The server exited or never became ready; the message carries its log tail."""


class ServerOutOfMemory(ServerStartError):
    """The server failed to start and its log says it ran out of (GPU) memory."""

    def __init__(self, message: str, line: str) -> None:
        super().__init__(message)
        self.line = line  # the log line that says so

    def __reduce__(self) -> tuple[type[ServerOutOfMemory], tuple[str, str]]:
        return type(self), (str(self), self.line)  # pickles whole (pytest-xdist)


class ServerExited(ServerStartError):
    """The server was ready once and has exited since (see :meth:`ManagedServer.check_running`)."""


def set_progress_reporter(reporter: Callable[[str], None] | None) -> None:
    """Where "waiting for ..." lines go while a server loads; None: nowhere."""
    global _PROGRESS
    _PROGRESS = reporter


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
        oom_patterns: Sequence[str] = (),
        progress_interval_s: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.health_url = health_url
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        # The engine's own first, then the shared ones; each once.
        self.oom_patterns = tuple(dict.fromkeys((*oom_patterns, *DEFAULT_OOM_PATTERNS)))
        self.progress_interval_s = progress_interval_s
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

    @property
    def where(self) -> str:
        """``:41234``, the port from the health URL, for messages."""
        port = urlsplit(self.health_url).port
        return f":{port}" if port is not None else self.health_url

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
        started = time.monotonic()
        deadline = started + self.ready_timeout_s
        next_progress = started + self.progress_interval_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self._fail(f"exited with code {code} before it was ready")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            now = time.monotonic()
            if now >= next_progress:
                self._report_progress(now - started)
                next_progress = now + self.progress_interval_s
            time.sleep(0.2)
        self._fail(f"was not ready at {self.health_url} within {self.ready_timeout_s:g} s")

    def check_running(self) -> None:
        """Raise :class:`ServerExited` (or :class:`ServerOutOfMemory`) if the server is gone."""
        assert self.process is not None, "start() first"
        code = self.process.poll()
        if code is not None:
            self._fail(f"exited with code {code} after it was ready", exited=True)

    def _fail(self, what: str, *, exited: bool = False) -> None:
        oom = self.oom_line()
        if oom is not None:
            kind = "memory" if "system memory" in oom.lower() else "GPU memory"
            raise ServerOutOfMemory(
                f"{self.name} ran out of {kind}: {oom}\n"
                f"({self.name} {what})\n{OOM_HINT}\nfull log: {self.log_path}",
                oom,
            )
        error = ServerExited if exited else ServerStartError
        raise error(f"{self.name} {what}\n{self.log_tail()}\nfull log: {self.log_path}")

    def _report_progress(self, elapsed_s: float) -> None:
        reporter = _PROGRESS
        if reporter is None:
            return
        last = _shorten(_last_log_line(self.log_path) or "(nothing yet)", _PROGRESS_LOG_CHARS)
        reporter(f"waiting for {self.name} on {self.where} - {elapsed_s:.0f} s, last log: {last}")

    def oom_line(self) -> str | None:
        """The first log line that matches an OOM pattern (case-insensitive), or None."""
        patterns = [p.lower() for p in self.oom_patterns if p]
        for line in _log_lines(self.log_path, _LOG_SCAN_BYTES):
            lowered = line.lower()
            if any(pattern in lowered for pattern in patterns):
                return _shorten(line.strip(), _OOM_LINE_CHARS)
        return None

    def stop(self) -> None:
        """SIGTERM the process group, wait, then SIGKILL; returns once the group is gone.

        Safe to call twice.  The grace period covers the whole group: an engine that exits on
        SIGTERM while its workers still shut down is not cut short.
        """
        process = self.process
        if process is not None:
            pgid = process.pid  # start_new_session: the group is the leader's pid
            deadline = time.monotonic() + self.stop_grace_s
            _signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            _wait_group_gone(pgid, process, deadline)
            # Workers the engine forked may outlive its main process: kill the whole group.
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.stop_grace_s)
            # Return only once every member is gone: a dying worker may still hold the GPU
            # memory the next server needs.
            _wait_group_gone(pgid, process, time.monotonic() + self.stop_grace_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    def restart(self) -> int | None:
        """Start the same command again (the same port) after the process died, and wait
        until it is ready; returns the new pid.  The log of the run that died is kept beside
        the new one as ``NAME.died.log``."""
        self.stop()
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_suffix(".died.log"))
        self.__enter__()
        return self.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = text.strip().splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in tail) or "(log is empty)"


def _log_lines(path: Path, max_bytes: int) -> list[str]:
    """The log's lines (of its last ``max_bytes``), colour codes and progress bars undone."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - max_bytes))
            data = log.read()
    except OSError:
        return []
    text = _ANSI.sub("", data.decode("utf-8", errors="replace"))
    # A progress bar redraws its line with \r: each redraw is a line of its own.
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def _last_log_line(path: Path) -> str | None:
    lines = _log_lines(path, 16 << 10)
    return lines[-1].strip() if lines else None


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap_group(pgid: int, leader: subprocess.Popen[bytes]) -> None:
    """Reap the group's members that are our children (re-parented to us, the subreaper).

    Not before ``leader`` itself is reaped: its exit status belongs to Popen.
    """
    if leader.returncode is None:
        return
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0] != 0:
            pass


def _group_exists(pgid: int, leader: subprocess.Popen[bytes]) -> bool:
    _reap_group(pgid, leader)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # a member we may not signal is not ours to wait for
    return True


def _wait_group_gone(pgid: int, leader: subprocess.Popen[bytes], deadline: float) -> None:
    while _group_exists(pgid, leader) and time.monotonic() < deadline:
        if leader.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                leader.wait(timeout=0.05)
        else:
            time.sleep(0.05)


def stop_all_servers() -> None:
    for server in list(_LIVE):
        server.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    stop_all_servers()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _become_subreaper() -> None:
    """Linux: orphaned descendants are re-parented to us (see the module docstring)."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_child_subreaper = 36
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _install_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    atexit.register(stop_all_servers)
    _become_subreaper()
    # Only the main thread may set handlers; keep one that someone else installed.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _on_sigterm)
    _HANDLERS_INSTALLED = True

"""Server process lifecycle: launch, wait until ready, capture the log, tear down for sure.

Every engine is started under a guard (:mod:`pytest_llmperf.engines.guard`): a small process
that is the parent and child subreaper of the engine's whole tree, so that the helpers an engine
detaches (a session of their own, Ray's daemons) stay in it.  The guard ends that tree, SIGTERM
then SIGKILL after the grace period, when :meth:`ManagedServer.stop` asks, and on its own when
this process is gone, however it died (SIGKILL, the OOM killer, a dropped ssh session).
``stop`` returns only once the tree is gone.  Live servers are also stopped at interpreter exit
and on SIGTERM and SIGHUP.  This process signals only the guard, its child, and only while it
is unreaped: a pid the kernel has since given to another process is never signalled.

Readiness counts only when the socket listening on the port belongs to the engine's tree
(:mod:`pytest_llmperf.engines.ports`): another process's answer on a port taken in between is
never the engine's.  Given ``relaunch`` (the command for another port), a server whose port was
taken is started again on a free one; the log says so.

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
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit

import requests

from pytest_llmperf.engines import ports
from pytest_llmperf.engines.guarded import EngineProcess, GuardError
from pytest_llmperf.engines.ports import free_port
from pytest_llmperf.engines.server_log import (
    DEFAULT_OOM_PATTERNS,
    OOM_HINT,
    last_log_line,
    log_lines,
    log_tail,
    oom_line,
    shorten,
)

__all__ = [
    "DEFAULT_OOM_PATTERNS",
    "ManagedServer",
    "Relaunch",
    "ServerExited",
    "ServerOutOfMemory",
    "ServerStartError",
    "free_port",
    "set_progress_reporter",
    "stop_all_servers",
]

# The command (argv, and the environment or None for the same) that serves on another port.
Relaunch = Callable[[int], tuple[Sequence[str], Mapping[str, str] | None]]

_LIVE: set[ManagedServer] = set()
_HANDLERS_INSTALLED = False
_PROGRESS: Callable[[str], None] | None = None
_PROGRESS_LOG_CHARS = 80  # the last log line, shortened to this, in a progress line
_PORT_TRIES = 3  # new ports tried after the first was taken
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


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


class _PortTaken(Exception):
    """The port is another process's; the message says whose."""


def set_progress_reporter(reporter: Callable[[str], None] | None) -> None:
    """Where "waiting for ..." lines go while a server loads; None: nowhere."""
    global _PROGRESS
    _PROGRESS = reporter


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
        relaunch: Relaunch | None = None,
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
        self.relaunch = relaunch
        self.process: EngineProcess | None = None
        self._log: IO[bytes] | None = None
        self._log_from = 0  # where this launch's part of the log begins
        self._port_fixed = False  # restart(): the clients know the port, it may not move
        self._launched_at = 0.0
        # Seconds from starting the process that serves to its health endpoint's first 200
        # (the engine's cold start: loading the model, warming its kernels); None until ready.
        self.ready_s: float | None = None

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
        """The engine's pid (not its guard's)."""
        return self.process.pid if self.process else None

    @property
    def port(self) -> int | None:
        return urlsplit(self.health_url).port

    @property
    def where(self) -> str:
        """``:41234``, the port from the health URL, for messages."""
        return f":{self.port}" if self.port is not None else self.health_url

    def start(self) -> None:
        _install_handlers()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")  # a fresh log: old runs never pollute it
        self._launch()

    def _launch(self) -> None:
        assert self._log is not None
        self._log.flush()
        self._log_from = self._log.tell()
        self._launched_at = time.monotonic()
        try:
            self.process = EngineProcess(self.argv, env=self.env, log=self._log,
                                         grace_s=self.stop_grace_s)
        except GuardError as exc:
            self._log.close()
            self._log = None
            raise ServerStartError(f"{self.name}: {exc}\n{self.log_tail()}\n"
                                   f"full log: {self.log_path}") from None
        _LIVE.add(self)

    def wait_ready(self) -> None:
        """Until the engine answers on its port; on a port another process took, started
        again on a free one (with ``relaunch``) or :class:`ServerStartError`."""
        for moves in range(_PORT_TRIES + 1):
            try:
                self._wait_ready_here()
                return
            except _PortTaken as taken:
                if self.relaunch is None or self._port_fixed or moves == _PORT_TRIES:
                    raise ServerStartError(f"{self.name} cannot serve on {self.where}: {taken}"
                                           f"\n{self.log_tail()}\nfull log: {self.log_path}"
                                           ) from None
                self._move(str(taken))

    def _wait_ready_here(self) -> None:
        assert self.process is not None, "start() first"
        started = time.monotonic()
        deadline = started + self.ready_timeout_s
        next_progress = started + self.progress_interval_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                if self._could_not_bind():
                    raise _PortTaken(f"port {self.port} is in use by another process "
                                     f"({ports.describe_listener(self.port or 0)})")
                self._fail(f"exited with code {code} before it was ready")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.health_url, timeout=1.0).status_code == 200:
                    self._check_listener()
                    self.ready_s = time.monotonic() - self._launched_at
                    return
            now = time.monotonic()
            if now >= next_progress:
                self._report_progress(now - started)
                next_progress = now + self.progress_interval_s
            time.sleep(0.2)
        self._fail(f"was not ready at {self.health_url} within {self.ready_timeout_s:g} s")

    def _check_listener(self) -> None:
        """:class:`_PortTaken` unless the socket answering on the port is the engine's."""
        assert self.process is not None and self.port is not None
        if ports.listening_pids(self.process.tree(), self.port):
            return
        owner = ports.describe_listener(self.port)
        if owner == "another process" and self.process.poll() is None:
            return  # nobody we may see holds it (another user's engine?): we cannot tell
        raise _PortTaken(f"port {self.port} answers {self.health_url}, but the process "
                         f"listening there is not {self.name}'s: it is {owner}")

    def _could_not_bind(self) -> bool:
        """This launch's log says the port was taken (not an earlier launch's part)."""
        return any(ports.ADDRESS_IN_USE.search(line)
                   for line in log_lines(self.log_path, 64 << 10, since=self._log_from))

    def _move(self, why: str) -> None:
        """Start the engine again on a free port (``relaunch`` gives the command)."""
        assert self.relaunch is not None and self.process is not None
        assert self._log is not None
        self.process.stop()
        old, new = self.port, free_port()
        argv, env = self.relaunch(new)
        self.argv = list(argv)
        if env is not None:
            self.env = dict(env)
        parts = urlsplit(self.health_url)
        self.health_url = parts._replace(netloc=f"{parts.hostname}:{new}").geturl()
        self._log.write(f"pytest-llmperf: port {old} is taken ({why}); starting {self.name} "
                        f"again on port {new}\n".encode())
        self._log.flush()
        self._launch()

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
        last = shorten(last_log_line(self.log_path) or "(nothing yet)", _PROGRESS_LOG_CHARS)
        reporter(f"waiting for {self.name} on {self.where} - {elapsed_s:.0f} s, last log: {last}")

    def oom_line(self) -> str | None:
        """The first log line that matches an OOM pattern (case-insensitive), or None."""
        return oom_line(self.log_path, self.oom_patterns)

    def stop(self) -> None:
        """The engine's whole tree, detached helpers included, ended by its guard (SIGTERM,
        the grace period, SIGKILL); returns once the tree is gone.  Safe to call twice.

        The grace period covers the whole tree: an engine that exits on SIGTERM while its
        workers still shut down is not cut short.
        """
        if self.process is not None:
            self.process.stop()
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
        self._port_fixed = True
        self.__enter__()
        return self.pid

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)


def stop_all_servers() -> None:
    for server in list(_LIVE):
        server.stop()


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    stop_all_servers()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _become_subreaper() -> None:
    """Linux: orphaned descendants are re-parented to us, so that an engine whose guard was
    killed is still ours to end (see guarded.EngineProcess.stop)."""
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
    # SIGHUP (a dropped ssh session) as SIGTERM.  Only the main thread may set handlers;
    # keep one that someone else installed.
    for signum in _STOP_SIGNALS:
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            with contextlib.suppress(ValueError):
                signal.signal(signum, _on_stop_signal)
    _HANDLERS_INSTALLED = True

"""Keeping a launched server alive for a session: a server that died is started again, once,
on the same port; one that dies again is lost.  And telling the requests a death cost from the
server's own failures.

:class:`Supervisor` is what a library user and the pytest fixtures share::

    supervisor = Supervisor(served, on_restart=telemetry.follow)
    served = supervisor.live()            # raises ServerLost when it cannot be had again
    window = run_load(served, ...)
    supervisor.check_window(window)       # raises ServerDied (with the window) if it died
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.lifecycle import ServerStartError
from pytest_llmperf.results.errors import ErrorKind, error_summary, kind_of
from pytest_llmperf.results.window import WindowResult

__all__ = ["DEATH_KINDS", "ServerDied", "ServerLost", "Supervisor", "lost_to_the_death"]

# Failures a dying server gives its requests in flight (an HTTP error it sent is its own).
DEATH_KINDS = frozenset({"connection", "truncated", "timeout", "empty"})


class ServerLost(RuntimeError):
    """The server died and cannot be had again (it was started again once already, or it did
    not start); the message says why."""


class ServerDied(RuntimeError):
    """The server died during a window: ``window`` has the requests the death cost marked
    ``server_died``; the message has the exit code, the log tail and the failures."""

    def __init__(self, message: str, window: WindowResult) -> None:
        super().__init__(message)
        self.window = window


class Supervisor:
    """One served model over a session.  ``on_restart(pid)`` is told the new server's pid (for
    telemetry to follow it); ``restarts`` lists why it was started again (at most once)."""

    def __init__(self, served: ServedModel, *,
                 on_restart: Callable[[int | None], None] | None = None) -> None:
        self.first = served
        self.current = served
        self.on_restart = on_restart
        self.restarts: list[str] = []

    def live(self) -> ServedModel:
        """The served model, started again if its launched server has died since (once per
        session); :class:`ServerLost` when it cannot be had."""
        current = self.current
        if current.check_alive is None or current.restart is None:
            return current  # attached or in-process: nothing of ours to start again
        try:
            current.check_alive()
            return current
        except ServerStartError as exc:
            death = exc
        if self.restarts:
            raise ServerLost(f"{self.first.description}: {death}\n(it was started again once "
                             "already this session; not again)")
        died = str(death).splitlines()[0]
        try:
            pid = current.restart()
        except ServerStartError as exc:
            raise ServerLost(f"{self.first.description}: it died ({died}) and did not start "
                             f"again: {exc}") from None
        self.current = dataclasses.replace(self.first, server_pid=pid)
        self.restarts.append(died)
        if self.on_restart is not None:
            self.on_restart(pid)
        return self.current

    def check_window(self, window: WindowResult) -> None:
        """:class:`ServerDied` when requests of ``window`` failed because the server died (its
        exit code, an out-of-memory line from its log, instead of bare connection errors)."""
        served = self.current
        if served.check_alive is None or not any(r.error for r in window.run.records):
            return
        try:
            served.check_alive()
        except ServerStartError as exc:
            lost = lost_to_the_death(window)
            summary = error_summary(lost.run.records)
            raise ServerDied(f"{served.description}: {exc}" + (f"\n{summary}" if summary else ""),
                             lost) from None


def lost_to_the_death(window: WindowResult) -> WindowResult:
    """``window`` with the requests the server's death failed marked ``server_died``."""
    records = tuple(
        dataclasses.replace(r, error_kind=ErrorKind.SERVER_DIED.value)
        if kind_of(r) in DEATH_KINDS else r for r in window.run.records)
    return dataclasses.replace(window, run=dataclasses.replace(window.run, records=records))

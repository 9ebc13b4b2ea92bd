"""Whether a measured window's numbers can be trusted: the client's health and the machine's.

A load generator that cannot keep up reads latencies it caused itself, and a machine busy with
other work slows the server for reasons that are not the server's.  Neither shows in the
latencies, so every window is watched for both:

- **client-bound**: the client's event loop ran late (a timer that should fire every 5 ms
  fired late by ``loop_lag_ms``; p99 over the window), or the client process used most of the
  one core its event loop can use (``client_cpu_pct``), or an open loop sent its requests late
  by its own doing (``send_late_ms`` p99: the schedule slip less any wait for a
  ``max_concurrency`` slot, which slow answers cause, not the client; see
  :func:`send_lateness` for its limit).  Read with an in-process engine, the client's CPU
  includes the engine's, so only the lag and the lateness judge it there.  Requests the
  client could not send because its own machine ran out (``client_limit``: file descriptors,
  local ports) mark it too, with how many and why: those failures are not the server's.
- **disturbed**: processes other than the server's tree and the client used more than a share
  of the machine's CPU (``other_cpu_pct``, % of the usable cores), or the hypervisor stole more
  than a share of it (``steal_pct``, where the kernel reports steal).

The limits are :data:`LIMITS`; docs/trust.md ("Can the numbers be trusted?") says how they were set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import psutil

from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.health import Health
from pytest_llmperf.results.percentiles import percentile
from pytest_llmperf.results.records import RequestRecord

__all__ = ["LIMITS", "HealthWatch", "judge_health", "local_server_pid", "send_lateness"]

TICK_S = 0.005  # the lag probe's period

# An open loop's lateness is held to LIMITS["send_late_ms_p99"], or to this share of the
# median TTFT or of the mean gap between arrivals, whichever is smaller, where that is more:
# 16 ms late against 2 s between arrivals and a 1 s TTFT changes neither the load nor a latency.
LATE_SHARE = 0.05

# Above these the window is marked (docs/trust.md, "Can the numbers be trusted?").
LIMITS: Mapping[str, float] = {
    "loop_lag_ms_p99": 25.0,  # the client read a token up to this late
    "client_cpu_pct": 90.0,  # % of one core: the event loop runs on one
    "send_late_ms_p99": 10.0,  # open loop: sent this late (at least; see send_lateness)
    "other_cpu_pct": 25.0,  # % of the usable cores, used by neither server nor client
    "steal_pct": 10.0,  # % of the usable cores, taken by the hypervisor
}


@dataclass
class _Snapshot:
    at_s: float
    client_cpu_s: float
    busy_s: float  # every CPU's non-idle time
    steal_s: float | None
    server_cpu: dict[tuple[int, float], float]


class HealthWatch:
    """A window observer: CPU snapshots at the window's start and end, and (``lag_probe``,
    run as a task on the client's event loop) the loop's lateness in between."""

    def __init__(self, server_pid: int | None, *, in_process: bool) -> None:
        self.server_pid = server_pid
        self.in_process = in_process
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        self.lags_ms: list[float] = []
        # Further processes of the client's (load.processes' workers): their CPU is the
        # client's, not other work.
        self.client_pids: Sequence[int] = ()
        # Further servers' processes (replicas on this machine): their CPU is the servers'.
        self.replica_pids: Sequence[int] = ()
        self._start: _Snapshot | None = None
        self.figures: dict[str, float] = {}

    def window_started(self) -> None:
        self.lags_ms = []
        self._start = self._snapshot()

    def window_ended(self) -> None:
        if self._start is not None:
            self.figures = self._compare(self._start, self._snapshot())

    async def lag_probe(self) -> None:
        """Sleep ``TICK_S`` again and again; each wake-up's lateness is the loop's lag."""
        while True:
            due = time.perf_counter() + TICK_S
            await asyncio.sleep(TICK_S)
            if self._start is not None:
                self.lags_ms.append(max(0.0, (time.perf_counter() - due) * 1000))

    def _snapshot(self) -> _Snapshot:
        client = 0.0
        for pid in (os.getpid(), *self.client_pids):
            with contextlib.suppress(psutil.Error):
                own = psutil.Process(pid).cpu_times()
                client += own.user + own.system
        system = psutil.cpu_times()
        idle = system.idle + getattr(system, "iowait", 0.0)
        return _Snapshot(time.perf_counter(), client,
                         sum(system) - idle - getattr(system, "guest", 0.0)
                         - getattr(system, "guest_nice", 0.0),
                         getattr(system, "steal", None),
                         {key: cpu for pid in (self.server_pid, *self.replica_pids)
                          for key, cpu in _tree_cpu(pid).items()})

    def _compare(self, start: _Snapshot, end: _Snapshot) -> dict[str, float]:
        span = max(end.at_s - start.at_s, 1e-9)
        capacity = span * self.cores
        client = end.client_cpu_s - start.client_cpu_s
        server = sum(cpu - start.server_cpu.get(key, 0.0)
                     for key, cpu in end.server_cpu.items()) if not self.in_process else 0.0
        steal = None if end.steal_s is None or start.steal_s is None \
            else end.steal_s - start.steal_s
        busy = end.busy_s - start.busy_s - (steal or 0.0)
        figures = {
            "window_s": round(span, 3),
            "other_cpu_pct": round(max(0.0, busy - client - max(server, 0.0)) / capacity * 100,
                                   1),
            "loop_lag_ms_p99": round(percentile(self.lags_ms, 99), 2) if self.lags_ms else 0.0,
            "loop_lag_ms_max": round(max(self.lags_ms, default=0.0), 2),
        }
        if not self.in_process:  # else the engine's CPU is in it too
            figures["client_cpu_pct"] = round(client / span * 100, 1)
        if steal is not None:
            figures["steal_pct"] = round(max(0.0, steal) / capacity * 100, 1)
        return figures


def local_server_pid(base_url: str) -> int | None:
    """The process listening on an attached server's port, when the URL is this machine's
    (its CPU is then the server's, not other work); None when remote or not ours to see."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.port is None:
        return None
    with contextlib.suppress(psutil.Error, OSError):
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr \
                    and connection.laddr.port == parts.port and connection.pid:
                return int(connection.pid)
    return None


def _tree_cpu(pid: int | None) -> dict[tuple[int, float], float]:
    """CPU seconds of ``pid`` and its descendants, keyed by (pid, birth) so a reused pid is
    not mistaken for the same process."""
    if pid is None:
        return {}
    seen: dict[tuple[int, float], float] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seen[(process.pid, process.create_time())] = times.user + times.system
    return seen


def send_lateness(records: Sequence[RequestRecord]) -> tuple[list[float], float]:
    """An open loop's own lateness per request, in ms (time sent - time scheduled - the wait
    for a ``max_concurrency`` slot), and the limit its p99 is held to: 10 ms, or
    :data:`LATE_SHARE` of the median TTFT or of the mean gap between arrivals, whichever is
    smaller, where that is more.  No lateness for a closed loop."""
    due = [r for r in records if r.scheduled_ns is not None]
    late = [(r.send_ns - (r.scheduled_ns or 0) - r.queued_ns) / 1e6 for r in due]
    floor = LIMITS["send_late_ms_p99"]
    ttfts = [(r.chunk_ns[0] - r.send_ns) / 1e6 for r in due if r.ok and r.chunk_ns]
    if len(due) < 2 or not ttfts:
        return late, floor
    times = [r.scheduled_ns or 0 for r in due]
    gap_ms = (max(times) - min(times)) / 1e6 / (len(due) - 1)
    return late, max(floor, LATE_SHARE * min(gap_ms, percentile(ttfts, 50)))


def judge_health(figures: Mapping[str, float], late_ms: Sequence[float],
                 late_limit_ms: float = LIMITS["send_late_ms_p99"], *,
                 records: Sequence[RequestRecord] = ()) -> Health:
    """``figures`` of a window plus an open loop's lateness (:func:`send_lateness`), with the
    marks they earn: ``client_bound`` and ``disturbed``, each the limits crossed (empty:
    none).  ``records``' failures on the client's own limits mark it client-bound too."""
    read = dict(figures)
    limits = {**LIMITS, "send_late_ms_p99": round(late_limit_ms, 2)}
    if late_ms:
        read["send_late_ms_p99"] = round(percentile(list(late_ms), 99), 2)
    bound = list(_crossed(read, limits, ("loop_lag_ms_p99", "client_cpu_pct",
                                         "send_late_ms_p99")))
    # In a small window the p99 is its latest send: one send late is one hiccup of the machine
    # (the engine's threads preempting the client on a small host), not a client that cannot
    # keep its schedule.  Two late sends at the least mark it.
    if sum(late > limits["send_late_ms_p99"] for late in late_ms) < 2:
        bound = [crossed for crossed in bound if not crossed.startswith("send_late_ms_p99")]
    own = [r for r in records if r.error_kind == ErrorKind.CLIENT_LIMIT.value]
    if own:
        bound.append(f"client_limit: {len(own)} of {len(records)} requests could not be sent, "
                     f"the client's own machine ran out (e.g. {(own[0].error or '')[:160]})")
    return Health(read, limits, tuple(bound),
                  tuple(_crossed(read, limits, ("other_cpu_pct", "steal_pct"))))


def _crossed(figures: Mapping[str, float], limits: Mapping[str, float],
             names: Sequence[str]) -> Iterator[str]:
    for name in names:
        value = figures.get(name)
        if value is not None and value > limits[name]:
            yield f"{name} {value:g} > {limits[name]:g}"

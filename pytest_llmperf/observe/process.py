"""Server CPU and memory during a measured window: psutil on the server's whole process tree.

Engines fork workers (tokenizer pools, tensor-parallel ranks), so the tree is listed again at
every sample and processes that vanish are simply left out.  CPU % is per core, as ``top``
shows it (100 = one core busy), summed over the tree.  It comes from each process's CPU-time
delta between samples rather than ``Process.cpu_percent``, so a worker born mid-window counts
from its first instant instead of returning a priming 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from pytest_llmperf.results.resources import MeanPeak, ServerUse, SystemUse

__all__ = ["CGROUP_ROOT", "ProcessSampler", "PsutilLike", "cgroup_memory_limit", "mean_peak",
           "measured_pid"]

MIB = 2**20
CGROUP_ROOT = Path("/sys/fs/cgroup")


# --- the parts of psutil used here, so unit tests can script them ---------------------------


class _CpuTimes(Protocol):
    @property
    def user(self) -> float: ...
    @property
    def system(self) -> float: ...


class _MemInfo(Protocol):
    @property
    def rss(self) -> int: ...


class _VirtualMemory(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def available(self) -> int: ...


class ProcessLike(Protocol):
    @property
    def pid(self) -> int: ...
    def children(self, recursive: bool = False) -> Sequence[ProcessLike]: ...
    def cpu_times(self) -> _CpuTimes: ...
    def memory_info(self) -> _MemInfo: ...
    def create_time(self) -> float: ...


class PsutilLike(Protocol):
    """The ``psutil`` module, or a fake; a vanished process raises ``psutil.NoSuchProcess``."""

    def Process(self, pid: int) -> ProcessLike: ...
    def cpu_percent(self, interval: float | None = None) -> float: ...
    def virtual_memory(self) -> _VirtualMemory: ...


# --- cgroup memory limit ---------------------------------------------------------------------


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """The container's memory limit in bytes (cgroup v2, then v1), or None when unlimited."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text == "max":
            return None
        try:
            limit = int(text)
        except ValueError:
            continue
        # v1 writes "unlimited" as a page-rounded 2**63-1; no machine has that much memory.
        return limit if 0 < limit < 2**62 else None
    return None


def mean_peak(values: Sequence[float | None], weights: Sequence[float | None] | None = None
              ) -> MeanPeak | None:
    """Mean and peak of the values that were measured (the mean weighted by ``weights`` when
    given); None when nothing was."""
    pairs = [(v, 1.0 if weights is None else weights[i] or 0.0)
             for i, v in enumerate(values) if v is not None]
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        return None
    mean = sum(v * w for v, w in pairs) / total
    return MeanPeak(round(mean, 3), round(max(v for v, _ in pairs), 3))


# --- sampler ---------------------------------------------------------------------------------

# CPU time moves in clock ticks (10 ms): a rate over a shorter interval is noise (0 or 300 %),
# so a reading that close to the last one leaves the CPU rate to the next reading.
_MIN_CPU_INTERVAL_S = 0.05


@dataclass
class _Window:
    t: list[float] = field(default_factory=list)
    cpu_interval_s: list[float | None] = field(default_factory=list)  # what each rate spans
    tree_cpu_pct: list[float | None] = field(default_factory=list)
    tree_rss_mib: list[float | None] = field(default_factory=list)
    tree_size: list[int] = field(default_factory=list)
    system_cpu_pct: list[float | None] = field(default_factory=list)
    system_used_mib: list[float | None] = field(default_factory=list)


class ProcessSampler:
    """Samples the tree under ``pid`` (None: no process of ours to measure, system only).

    Driven by :class:`pytest_llmperf.observe.telemetry.Telemetry`: ``start`` opens a window,
    ``sample(t)`` takes one reading at ``t`` seconds into it, ``finish`` returns its figures.
    CPU means are weighted by the interval each rate spans, so they equal CPU time / time.
    """

    def __init__(self, pid: int | None, *, scope: str, source: PsutilLike | None = None,
                 cgroup_root: Path = CGROUP_ROOT) -> None:
        self.pid = pid
        self.scope = scope  # "launched server", "in-process engine (the test process)", ...
        self._ps: PsutilLike = source if source is not None else psutil
        self._cgroup_root = cgroup_root
        self._cpu_seen: dict[tuple[int, float], float] = {}  # (pid, birth) -> CPU seconds
        self._last_t: float | None = None  # the last reading that set the CPU references
        self._window = _Window()
        self.pids: frozenset[int] = frozenset()  # the tree at the latest sample

    def start(self) -> None:
        self._window = _Window()
        self._cpu_seen = {}
        self._last_t = None

    def sample(self, t: float) -> None:
        w = self._window
        tree = self._read_tree() if self.pid is not None else None
        self.pids = frozenset(pid for pid, _ in tree[0]) if tree is not None else frozenset()
        elapsed = None if self._last_t is None else t - self._last_t
        tree_cpu = system_cpu = None
        if elapsed is None or elapsed >= _MIN_CPU_INTERVAL_S:
            system = self._ps.cpu_percent(None)  # since its last call, i.e. our last reading
            if tree is not None:
                # A process not seen before was born after the last reading: all its CPU
                # time is new.  (The first reading only sets the references.)
                seconds = sum(cpu - self._cpu_seen.get(key, 0.0) for key, cpu in tree[0].items())
                self._cpu_seen = tree[0]
                if elapsed is not None:
                    tree_cpu = max(seconds, 0.0) / elapsed * 100
            if elapsed is not None:
                system_cpu = system
            self._last_t = t
        w.t.append(t)
        w.cpu_interval_s.append(elapsed if system_cpu is not None else None)
        w.tree_cpu_pct.append(tree_cpu)
        w.tree_rss_mib.append(None if tree is None else tree[1] / MIB)
        w.tree_size.append(len(self.pids))
        w.system_cpu_pct.append(system_cpu)
        memory = self._ps.virtual_memory()
        w.system_used_mib.append((memory.total - memory.available) / MIB)

    def _read_tree(self) -> tuple[dict[tuple[int, float], float], int] | None:
        """CPU seconds of each process of the tree, and their RSS summed; None when the
        server itself is gone."""
        assert self.pid is not None
        try:
            root = self._ps.Process(self.pid)
            tree = [root, *root.children(recursive=True)]  # listed anew: workers come and go
        except psutil.Error:
            return None
        cpu: dict[tuple[int, float], float] = {}
        rss = 0
        for process in tree:
            try:
                key = (process.pid, process.create_time())  # a reused pid is a new process
                times = process.cpu_times()
                rss += process.memory_info().rss
            except psutil.Error:
                continue  # exited between the listing and the reading
            cpu[key] = times.user + times.system
        return cpu, rss

    def finish(self) -> tuple[ServerUse, SystemUse]:
        """The window's figures for the server tree and the whole system; what was not
        measured is None."""
        w = self._window
        server = ServerUse(self.scope, self.pid, mean_peak(w.tree_cpu_pct, w.cpu_interval_s),
                           mean_peak(w.tree_rss_mib),
                           max(w.tree_size) if self.pid is not None and w.tree_size else None)
        system = SystemUse(round(self.memory_limit_mib(), 1),
                           mean_peak(w.system_cpu_pct, w.cpu_interval_s),
                           mean_peak(w.system_used_mib))
        return server, system

    def memory_limit_mib(self) -> float:
        """min(total RAM, the cgroup limit): what the server can really use."""
        total = self._ps.virtual_memory().total
        limit = cgroup_memory_limit(self._cgroup_root)
        return min(total, limit if limit is not None else total) / MIB

    def timeline(self) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
        """The server tree's CPU % and RSS MiB at each sample, one decimal."""
        w = self._window
        return _rounded(w.tree_cpu_pct), _rounded(w.tree_rss_mib)


def _rounded(values: Sequence[float | None]) -> tuple[float | None, ...]:
    return tuple(None if v is None else round(v, 1) for v in values)


def measured_pid(server_pid: int | None, in_process: bool) -> tuple[int | None, str]:
    """Which process tree to watch for a served model, and in words why."""
    if server_pid is not None:
        return server_pid, "launched server"
    if in_process:
        return os.getpid(), "in-process engine (the test process)"
    return None, "attached server: not our process, no process metrics"

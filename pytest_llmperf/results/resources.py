"""What a measured window used: the server's process tree, the machine and each GPU, sampled
during the window (:mod:`pytest_llmperf.observe.telemetry` reads them).

A figure that was not measured is None (no GPU, an attached server, a board that does not report
power), never zero; :meth:`Resources.unmeasured_reasons` says why for each SLO-able metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pytest_llmperf.results.jsonfields import Fields, JSONObject
from pytest_llmperf.results.metrics import GPU_METRICS, RESOURCES

__all__ = ["GpuTimeline", "GpuUse", "MeanPeak", "Resources", "ServerUse", "SystemUse",
           "Timeline"]


@dataclass(frozen=True)
class MeanPeak:
    mean: float
    peak: float

    def to_json(self) -> JSONObject:
        return {"mean": self.mean, "peak": self.peak}

    @classmethod
    def read(cls, fields: Fields, key: str) -> MeanPeak | None:
        found = fields.obj_or_none(key)
        return None if found is None else cls(found.number("mean"), found.number("peak"))


def _json(figure: MeanPeak | None) -> JSONObject | None:
    return None if figure is None else figure.to_json()


@dataclass(frozen=True)
class ServerUse:
    """The server's whole process tree (CPU: 100 = one core busy)."""

    scope: str  # "launched server", "in-process engine (the test process)", "attached ..."
    pid: int | None = None  # None: not our process to measure
    cpu_pct: MeanPeak | None = None
    rss_mib: MeanPeak | None = None
    processes_peak: int | None = None

    def to_json(self) -> JSONObject:
        return {"scope": self.scope, "pid": self.pid, "cpu_pct": _json(self.cpu_pct),
                "rss_mib": _json(self.rss_mib), "processes_peak": self.processes_peak}

    @classmethod
    def from_json(cls, fields: Fields) -> ServerUse:
        return cls(fields.text_or_none("scope") or "", fields.integer_or_none("pid"),
                   MeanPeak.read(fields, "cpu_pct"), MeanPeak.read(fields, "rss_mib"),
                   fields.integer_or_none("processes_peak"))


@dataclass(frozen=True)
class SystemUse:
    """The whole machine (CPU: 100 = every core busy)."""

    memory_limit_mib: float | None = None  # min(RAM, the cgroup limit)
    cpu_pct: MeanPeak | None = None
    memory_used_mib: MeanPeak | None = None

    def to_json(self) -> JSONObject:
        return {"memory_limit_mib": self.memory_limit_mib, "cpu_pct": _json(self.cpu_pct),
                "memory_used_mib": _json(self.memory_used_mib)}

    @classmethod
    def from_json(cls, fields: Fields) -> SystemUse:
        return cls(fields.number_or_none("memory_limit_mib"), MeanPeak.read(fields, "cpu_pct"),
                   MeanPeak.read(fields, "memory_used_mib"))


# Per-sample figures of a GPU, with their units in the name.
GPU_FIGURES: tuple[str, ...] = ("util_pct", "memory_used_mib", "power_w", "temperature_c",
                                "sm_clock_mhz", "process_memory_mib")


@dataclass(frozen=True)
class GpuUse:
    """One GPU over the window: mean and peak of each figure it reported, and its energy."""

    index: int
    name: str
    uuid: str | None = None
    memory_total_mib: float | None = None
    util_pct: MeanPeak | None = None
    memory_used_mib: MeanPeak | None = None
    power_w: MeanPeak | None = None
    temperature_c: MeanPeak | None = None
    sm_clock_mhz: MeanPeak | None = None
    process_memory_mib: MeanPeak | None = None  # the server tree's memory on this GPU
    energy_j: float | None = None
    energy_source: str | None = None  # "NVML energy counter" or "integrated power samples"

    def figure(self, name: str) -> MeanPeak | None:
        """One of :data:`GPU_FIGURES` by name."""
        value = getattr(self, name)
        return value if isinstance(value, MeanPeak) else None

    def to_json(self) -> JSONObject:
        return {"index": self.index, "name": self.name, "uuid": self.uuid,
                "memory_total_mib": self.memory_total_mib,
                **{name: _json(self.figure(name)) for name in GPU_FIGURES},
                "energy_j": self.energy_j, "energy_source": self.energy_source}

    @classmethod
    def from_json(cls, fields: Fields) -> GpuUse:
        figures = {name: MeanPeak.read(fields, name) for name in GPU_FIGURES}
        return cls(fields.integer("index"), fields.text("name"), fields.text_or_none("uuid"),
                   fields.number_or_none("memory_total_mib"), **figures,
                   energy_j=fields.number_or_none("energy_j"),
                   energy_source=fields.text_or_none("energy_source"))


@dataclass(frozen=True)
class GpuTimeline:
    util_pct: tuple[float | None, ...] = ()
    memory_used_mib: tuple[float | None, ...] = ()
    power_w: tuple[float | None, ...] = ()

    def to_json(self) -> JSONObject:
        return {"util_pct": list(self.util_pct), "memory_used_mib": list(self.memory_used_mib),
                "power_w": list(self.power_w)}

    @classmethod
    def from_json(cls, fields: Fields) -> GpuTimeline:
        return cls(fields.numbers("util_pct"), fields.numbers("memory_used_mib"),
                   fields.numbers("power_w"))


@dataclass(frozen=True)
class Timeline:
    """Every sample of the window, for its chart: seconds into the window, and the readings."""

    t_s: tuple[float | None, ...] = ()
    gpus: tuple[GpuTimeline, ...] = ()
    server_cpu_pct: tuple[float | None, ...] = ()
    server_rss_mib: tuple[float | None, ...] = ()

    def to_json(self) -> JSONObject:
        return {"t_s": list(self.t_s), "gpus": [gpu.to_json() for gpu in self.gpus],
                "server_cpu_pct": list(self.server_cpu_pct),
                "server_rss_mib": list(self.server_rss_mib)}

    @classmethod
    def from_json(cls, fields: Fields) -> Timeline:
        return cls(fields.numbers("t_s"), fields.each("gpus", GpuTimeline.from_json),
                   fields.numbers("server_cpu_pct"), fields.numbers("server_rss_mib"))


@dataclass(frozen=True)
class Resources:
    """The window's figures; ``metrics`` are the SLO-able ones (results.metrics.RESOURCES)."""

    server: ServerUse
    system: SystemUse
    gpus: tuple[GpuUse, ...] = ()
    gpu_unavailable_reason: str | None = None  # set when no GPU could be read, and why
    metrics: Mapping[str, float] = field(default_factory=dict)
    interval_s: float = 0.5
    samples: int = 0
    duration_s: float = 0.0
    error: str | None = None  # a sampling failure (the window's numbers stand without it)
    timeline: Timeline | None = None
    idle: Resources | None = None  # readings before the first window, for comparison

    def with_output_tokens(self, output_tokens: int) -> Resources:
        """These figures with ``energy_j_per_token`` where the energy and a count are known."""
        if not output_tokens or "energy_j" not in self.metrics:
            return self
        return replace(self, metrics={**self.metrics,
                                      "energy_j_per_token": self.metrics["energy_j"]
                                      / output_tokens})

    def unmeasured_reasons(self) -> dict[str, str]:
        """Why each resource metric missing from :attr:`metrics` is missing."""
        gpu_reason = self.gpu_unavailable_reason or "the GPU did not report it"
        server_reason = (self.server.scope if self.server.pid is None
                         else "the server process did not report it")
        reasons = {}
        for name in RESOURCES:
            if name in self.metrics:
                continue
            if name in GPU_METRICS:
                reasons[name] = gpu_reason
            elif name == "energy_j_per_token":
                reasons[name] = "no output tokens"
            elif name.startswith("server_"):
                reasons[name] = server_reason or "no server process"
            else:
                reasons[name] = "not measured in this window"
        return reasons

    def to_json(self) -> JSONObject:
        return {"server": self.server.to_json(), "system": self.system.to_json(),
                "gpus": [gpu.to_json() for gpu in self.gpus],
                "gpu_unavailable_reason": self.gpu_unavailable_reason,
                "metrics": dict(self.metrics), "interval_s": self.interval_s,
                "samples": self.samples, "duration_s": self.duration_s, "error": self.error,
                "timeline": None if self.timeline is None else self.timeline.to_json(),
                "idle": None if self.idle is None else self.idle.to_json()}

    @classmethod
    def from_json(cls, fields: Fields) -> Resources:
        timeline = fields.obj_or_none("timeline")
        # schema 1 kept the idle readings as "baseline"
        idle = fields.obj_or_none("idle") or fields.obj_or_none("baseline")
        return cls(ServerUse.from_json(fields.obj("server")),
                   SystemUse.from_json(fields.obj("system")),
                   fields.each("gpus", GpuUse.from_json),
                   fields.text_or_none("gpu_unavailable_reason"),
                   fields.number_map("metrics"), fields.number("interval_s", 0.5),
                   fields.integer("samples", 0), fields.number("duration_s", 0.0),
                   fields.text_or_none("error"),
                   None if timeline is None else Timeline.from_json(timeline),
                   None if idle is None else cls.from_json(idle))

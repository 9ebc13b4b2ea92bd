"""Whether a window's numbers can be trusted: the client's and the machine's figures over it,
the limits they were held to, and the marks they earned (see
:mod:`pytest_llmperf.observe.health` for how they are read and why those limits)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_llmperf.results.jsonfields import Fields, JSONObject

__all__ = ["Health"]


@dataclass(frozen=True)
class Health:
    # loop_lag_ms_p99, loop_lag_ms_max, client_cpu_pct, send_late_ms_p99, other_cpu_pct,
    # steal_pct, window_s, client_processes: those that were read
    figures: Mapping[str, float] = field(default_factory=dict)
    limits: Mapping[str, float] = field(default_factory=dict)
    client_bound: tuple[str, ...] = ()  # the limits crossed, e.g. "loop_lag_ms_p99 31 > 25"
    disturbed: tuple[str, ...] = ()

    @property
    def marks(self) -> dict[str, tuple[str, ...]]:
        """``{"client-bound": (...limits crossed), "disturbed": (...)}``, marks earned only."""
        return {mark: crossed for mark, crossed in (("client-bound", self.client_bound),
                                                     ("disturbed", self.disturbed)) if crossed}

    def to_json(self) -> JSONObject:
        return {"figures": dict(self.figures), "limits": dict(self.limits),
                "client_bound": list(self.client_bound), "disturbed": list(self.disturbed)}

    @classmethod
    def from_json(cls, fields: Fields) -> Health:
        if "figures" not in fields:  # schema 1: the figures, marks and limits side by side
            figures = {key: value for key, value in fields.number_map_loose().items()
                       if key != "limits"}
            return cls(figures, fields.number_map("limits"), fields.texts("client_bound"),
                       fields.texts("disturbed"))
        return cls(fields.number_map("figures"), fields.number_map("limits"),
                   fields.texts("client_bound"), fields.texts("disturbed"))

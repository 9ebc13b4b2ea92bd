"""A sweep: the same test at several loads, each point its own warm-up and measured window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_llmperf.load.runner import PerfResult

__all__ = ["SweepResult"]


@dataclass(frozen=True)
class SweepResult:
    """The points of a sweep in the order they ran (the order of the loads asked for)."""

    dimension: str  # "users", "rate", or "input_tokens" (a prefill sweep: one load)
    points: tuple[PerfResult, ...]
    # Each point's place on the sweep's axis where it is not the load (input tokens).
    values: tuple[float, ...] | None = None

    @property
    def loads(self) -> tuple[float, ...]:
        if self.values is not None:
            return self.values
        return tuple(point.shape.load for point in self.points)

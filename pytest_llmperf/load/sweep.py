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

    dimension: str  # "users" or "rate"
    points: tuple[PerfResult, ...]

    @property
    def loads(self) -> tuple[float, ...]:
        return tuple(point.shape.load for point in self.points)

"""A sweep: the same test at several loads (or prompt lengths), each point its own warm-up and
measured window."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.window import WindowResult

__all__ = ["SweepResult"]


@dataclass(frozen=True)
class SweepResult:
    """The points of a sweep in the order they ran (the order of the loads asked for)."""

    dimension: str  # "users", "rate" (staged rates too), or "input_tokens" (a prefill sweep)
    points: tuple[WindowResult, ...]
    # Each point's place on the sweep's axis where it is not the load (input tokens).
    values: tuple[float, ...] | None = None
    # Each point's name in the table where its load's label is not enough (staged rates).
    labels: tuple[str, ...] | None = None

    @property
    def loads(self) -> tuple[float, ...]:
        if self.values is not None:
            return self.values
        return tuple(point.shape.load for point in self.points)

    @property
    def rows(self) -> tuple[LoadPoint, ...]:
        """Each point's figures, for the sweep's table and chart."""
        if self.labels is not None:
            return tuple(LoadPoint.of(point, label=label)
                         for label, point in zip(self.labels, self.points, strict=True))
        if self.values is None:
            return tuple(LoadPoint.of(point) for point in self.points)
        return tuple(LoadPoint.of(point, load=value,
                                  label=f"{value:g} input tokens, {point.shape.label}")
                     for value, point in zip(self.values, self.points, strict=True))

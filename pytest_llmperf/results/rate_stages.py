"""Staged and ramped request rates (``--llmperf-rate-stages '1:60,1..4:30,4:120'``).

A stage holds a rate for some seconds (``RATE:SECONDS``) or ramps it linearly from one rate to
another (``FROM..TO:SECONDS``).  The stages of a run are one schedule of absolute times: the
arrivals of every stage are drawn at once, as a non-homogeneous process whose intensity is the
stage's rate at each moment (time rescaling: gaps drawn with mean 1 in "expected arrivals",
then mapped back to seconds through the cumulative rate).  A steady stage is then exactly the
open loop of its rate, and a ramp has no steps.  Each stage is measured as a window of its own
(the requests scheduled in it); load.staged splits the run.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RateStage", "parse_rate_stages", "stage_starts", "stages_text", "time_at_mass"]


@dataclass(frozen=True)
class RateStage:
    """``seconds`` of arrivals whose rate goes linearly from ``start_rate`` to ``end_rate``
    (the same: a steady stage), in requests per second."""

    start_rate: float
    end_rate: float
    seconds: float

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise ValueError(f"a stage lasts a number of seconds > 0, got {self.seconds:g}")
        for rate in (self.start_rate, self.end_rate):
            if not (rate >= 0 and math.isfinite(rate)):
                raise ValueError(f"a stage's rate is a finite number of req/s >= 0, got {rate:g}")
        if self.start_rate == 0 and self.end_rate == 0:
            raise ValueError("a stage at 0 req/s offers nothing: give it a rate above 0")

    @classmethod
    def steady(cls, rate: float, seconds: float) -> RateStage:
        return cls(rate, rate, seconds)

    @property
    def is_ramp(self) -> bool:
        return self.start_rate != self.end_rate

    @property
    def mean_rate(self) -> float:
        return (self.start_rate + self.end_rate) / 2

    @property
    def mass(self) -> float:
        """Arrivals the stage offers on average (the integral of its rate)."""
        return self.mean_rate * self.seconds

    @property
    def text(self) -> str:
        """As the option spells it: ``2:60`` or ``1..4:30``."""
        rates = (f"{self.start_rate:g}..{self.end_rate:g}" if self.is_ramp
                 else f"{self.start_rate:g}")
        return f"{rates}:{self.seconds:g}"

    @property
    def label(self) -> str:
        """``2 req/s for 60 s`` or ``1 to 4 req/s ramp over 30 s``."""
        if self.is_ramp:
            return (f"{self.start_rate:g} to {self.end_rate:g} req/s ramp over "
                    f"{self.seconds:g} s")
        return f"{self.start_rate:g} req/s for {self.seconds:g} s"

    def seconds_at(self, mass: float) -> float:
        """Seconds into the stage by which ``mass`` arrivals are expected (0 <= mass <=
        :attr:`mass`): the inverse of the rate's integral a*t + (b - a) * t^2 / (2 T)."""
        a, slope = self.start_rate, (self.end_rate - self.start_rate) / self.seconds
        if mass <= 0:
            return 0.0
        if slope == 0:
            return mass / a
        # slope/2 * t^2 + a*t - mass = 0; the root written so it stays exact as slope -> 0.
        return 2 * mass / (a + math.sqrt(max(a * a + 2 * slope * mass, 0.0)))

    def scaled(self, factor: float) -> RateStage:
        return RateStage(self.start_rate * factor, self.end_rate * factor, self.seconds)


def parse_rate_stages(value: str) -> tuple[RateStage, ...]:
    """``1:60,2:60,4:120`` (RATE:SECONDS) with ramps as ``1..4:30`` (FROM..TO:SECONDS)."""
    expected = ("expected comma-separated stages RATE:SECONDS or FROM..TO:SECONDS (a linear "
                "ramp), e.g. 1:60,1..4:30,4:120")
    stages = []
    for item in (part.strip() for part in value.split(",")):
        rates, colon, seconds = item.rpartition(":")
        if not colon or not rates.strip():
            raise ValueError(f"{item!r}: {expected}")
        start, dots, end = rates.partition("..")
        try:
            low, high = float(start), float(end if dots else start)
            stages.append(RateStage(low, high, float(seconds)))
        except ValueError as exc:
            detail = str(exc) if "stage" in str(exc) else expected
            raise ValueError(f"{item!r}: {detail}") from None
    return tuple(stages)


def stages_text(stages: Sequence[RateStage]) -> str:
    return ",".join(stage.text for stage in stages)


def stage_starts(stages: Sequence[RateStage]) -> tuple[float, ...]:
    """Seconds from the first stage's start to each stage's start."""
    starts, at = [], 0.0
    for stage in stages:
        starts.append(at)
        at += stage.seconds
    return tuple(starts)


def time_at_mass(stages: Sequence[RateStage], masses: Sequence[float]
                 ) -> list[tuple[float, int]]:
    """Each of ``masses`` (expected arrivals since the start, ascending, below the stages' total)
    as (seconds since the start, the stage it falls in)."""
    bounds, total = [], 0.0
    for stage in stages:
        bounds.append(total)
        total += stage.mass
    starts = stage_starts(stages)
    out = []
    for mass in masses:
        index = max(0, bisect.bisect_right(bounds, mass) - 1)
        stage = stages[index]
        into = min(mass - bounds[index], stage.mass)
        out.append((starts[index] + min(stage.seconds_at(into), stage.seconds), index))
    return out

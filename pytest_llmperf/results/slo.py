"""Hold measured metrics against SLO checks and say plainly what missed and by how much."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pytest_llmperf.results.metrics import DISTRIBUTIONS, RESOURCES, SCALARS, RunMetrics
from pytest_llmperf.results.thresholds import Check

__all__ = ["Verdict", "evaluate", "failure_message", "format_number"]


@dataclass(frozen=True)
class Verdict:
    check: Check
    measured: float | None  # None: nothing measured it (every request failed, no GPU, ...)
    unmeasured_reason: str | None = None  # why measured is None, when known
    skipped: bool = False  # could not be measured here and not required: neither pass nor fail

    @property
    def passed(self) -> bool:
        if self.skipped:
            return True
        return self.measured is not None and self.check.holds(self.measured)

    @property
    def state(self) -> str:
        return "skip" if self.skipped else "pass" if self.passed else "fail"

    @property
    def unit(self) -> str:
        metric = self.check.metric
        info = DISTRIBUTIONS.get(metric) or SCALARS.get(metric) or RESOURCES[metric]
        return info.unit

    def describe(self) -> str:
        """``tpot_ms.p95 = 142.3 ms, required < 100 ms (missed by 42.3 ms)``."""
        unit = f" {self.unit}" if self.unit else ""
        required = f"required {self.check.operator} {self.check.limit_text}{unit}"
        if self.skipped:
            return f"{self.check.key} skipped: {self.unmeasured_reason}; {required}"
        if self.measured is None:
            reason = self.unmeasured_reason or "no request completed"
            return f"{self.check.key} not measured: {reason}, {required}"
        text = f"{self.check.key} = {format_number(self.measured)}{unit}, {required}"
        if not self.passed:
            miss = abs(self.measured - self.check.limit)
            text += f" (missed by {format_number(miss)}{unit})"
        return text


def format_number(value: float) -> str:
    """One decimal from 10 up, three significant digits below (0.0156, 8.25, 142.3)."""
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def evaluate(
    metrics: RunMetrics,
    checks: Iterable[Check],
    *,
    unmeasured: Mapping[str, str] | None = None,
    required: Iterable[str] = (),
) -> tuple[Verdict, ...]:
    """A verdict per check.  A resource metric that could not be measured here (``unmeasured``
    maps it to the reason, e.g. "no NVIDIA GPU: ...") is skipped, unless it is in
    ``required`` (``--llmperf-require-gpu``): then it fails with that reason."""
    reasons = unmeasured or {}
    must = set(required)
    verdicts = []
    for check in checks:
        value = metrics.value(check.metric, check.statistic)
        reason = reasons.get(check.metric) if value is None else None
        skipped = reason is not None and check.metric in RESOURCES and check.metric not in must
        verdicts.append(Verdict(check, value, reason, skipped))
    return tuple(verdicts)


def failure_message(verdicts: Iterable[Verdict], context: str, where: str | None = None) -> str:
    """One line per missed SLO, each ending with ``-- context``; empty when all passed."""
    lines = [f"{v.describe()} -- {context}" for v in verdicts if not v.passed]
    if lines and where:
        lines.append(where)
    return "\n".join(lines)

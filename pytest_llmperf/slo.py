"""Hold measured metrics against SLO checks and say plainly what missed and by how much."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_llmperf.metrics import DISTRIBUTIONS, SCALARS, RunMetrics
from pytest_llmperf.thresholds import Check

__all__ = ["Verdict", "evaluate", "failure_message", "format_number"]


@dataclass(frozen=True)
class Verdict:
    check: Check
    measured: float | None  # None: nothing measured it (every request failed)

    @property
    def passed(self) -> bool:
        return self.measured is not None and self.check.holds(self.measured)

    @property
    def unit(self) -> str:
        info = DISTRIBUTIONS.get(self.check.metric) or SCALARS[self.check.metric]
        return info.unit

    def describe(self) -> str:
        """``tpot_ms.p95 = 142.3 ms, required < 100 ms (missed by 42.3 ms)``."""
        unit = f" {self.unit}" if self.unit else ""
        required = f"required {self.check.operator} {self.check.limit_text}{unit}"
        if self.measured is None:
            return f"{self.check.key} not measured: no request completed, {required}"
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


def evaluate(metrics: RunMetrics, checks: Iterable[Check]) -> tuple[Verdict, ...]:
    return tuple(Verdict(check, metrics.value(check.metric, check.statistic)) for check in checks)


def failure_message(verdicts: Iterable[Verdict], context: str, where: str | None = None) -> str:
    """One line per missed SLO, each ending with ``-- context``; empty when all passed."""
    lines = [f"{v.describe()} -- {context}" for v in verdicts if not v.passed]
    if lines and where:
        lines.append(where)
    return "\n".join(lines)

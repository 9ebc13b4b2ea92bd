"""Hold measured metrics against SLO checks and say plainly what missed and by how much."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError, JSONObject
from pytest_llmperf.results.metric_names import NOT_STREAMED, STREAMED_ONLY
from pytest_llmperf.results.metrics import DISTRIBUTIONS, RESOURCES, RunMetrics, metric_info
from pytest_llmperf.results.thresholds import Check, ThresholdError, parse_check

__all__ = ["Verdict", "evaluate", "failure_message", "format_number", "read_check",
           "unsupported_reason"]


@dataclass(frozen=True)
class Verdict:
    check: Check
    measured: float | None  # None: nothing measured it (every request failed, no GPU, ...)
    unmeasured_reason: str | None = None  # why measured is None, when known
    skipped: bool = False  # could not be measured here and not required: neither pass nor fail
    # Why the sample does not support a percentile that meets the SLO (too few requests for
    # the claim at 95 % confidence), and what --llmperf-inconclusive says to do then.
    unsupported: str | None = None
    inconclusive_policy: str = "warn"

    @property
    def met(self) -> bool:
        """The measured value meets the requirement (supported by the sample or not)."""
        return self.measured is not None and self.check.holds(self.measured)

    @property
    def inconclusive(self) -> bool:
        return not self.skipped and self.met and self.unsupported is not None

    @property
    def passed(self) -> bool:
        if self.skipped:
            return True
        if self.inconclusive:
            return self.inconclusive_policy != "fail"
        return self.met

    @property
    def state(self) -> str:
        if self.skipped:
            return "skip"
        if self.inconclusive:
            return "inconclusive"
        return "pass" if self.met else "fail"

    @property
    def unit(self) -> str:
        metric = self.check.metric
        info = metric_info(metric)
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
        if self.inconclusive:
            return f"{text}: inconclusive, {self.unsupported}"
        if not self.met:
            miss = abs(self.measured - self.check.limit)
            text += f" (missed by {format_number(miss)}{unit})"
        return text

    @property
    def requirement(self) -> str:
        """``< 100 ms``."""
        return f"{self.check.operator} {self.check.limit_text} {self.unit}".strip()

    def to_json(self) -> JSONObject:
        """The check as written and where, what was measured, and how it was judged (``state``,
        ``passed`` and ``description`` are written for readers; reading derives them)."""
        return {"check": self.check.text, "origin": self.check.origin,
                "measured": self.measured, "unmeasured_reason": self.unmeasured_reason,
                "skipped": self.skipped, "unsupported": self.unsupported,
                "inconclusive_policy": self.inconclusive_policy,
                "state": self.state, "passed": self.passed, "description": self.describe()}

    @classmethod
    def from_json(cls, fields: Fields) -> Verdict:
        return cls(read_check(fields), fields.number_or_none("measured"),
                   fields.text_or_none("unmeasured_reason"), fields.flag("skipped"),
                   fields.text_or_none("unsupported"),
                   fields.text_or_none("inconclusive_policy") or "warn")


def read_check(fields: Fields) -> Check:
    """The stored ``check`` text read again, as it was when written (its ``origin`` kept)."""
    origin = fields.text_or_none("origin") or "stored verdict"
    try:
        return parse_check(fields.text("check"), origin)
    except ThresholdError as exc:
        raise JSONDecodeError(f"{fields.path}.check: {exc}") from None


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
    inconclusive: str = "warn",
    confidence: float = 0.95,
) -> tuple[Verdict, ...]:
    """A verdict per check.  A resource metric that could not be measured here (``unmeasured``
    maps it to the reason, e.g. "no NVIDIA GPU: ...") is skipped, unless it is in
    ``required`` (``--llmperf-require-gpu``): then it fails with that reason; so is a streamed
    metric of a window that streamed nothing (embeddings).  A percentile
    that meets its SLO is ``inconclusive`` when the sample cannot support the claim
    (:func:`unsupported_reason`, at ``confidence``: a window sized by its SLOs judges at its
    looks' confidence, results.sequential); ``inconclusive`` (fail, warn, pass) says what that
    counts as."""
    reasons = unmeasured or {}
    must = set(required)
    verdicts = []
    for check in checks:
        value = metrics.value(check.metric, check.statistic)
        reason = reasons.get(check.key, reasons.get(check.metric)) if value is None else None
        # A resource not measurable here, the startup of a server the session did not launch,
        # or a streamed metric of a window that streamed nothing (embeddings), is skipped with
        # its reason.
        skipped = reason is not None and check.metric not in must and (
            check.metric in RESOURCES or check.metric in ("startup_s", "first_ttft_ms")
            or (check.metric in STREAMED_ONLY and reason == NOT_STREAMED))
        unsupported = None
        if value is not None and check.holds(value) and check.metric in DISTRIBUTIONS:
            unsupported = unsupported_reason(check, metrics.distributions[check.metric],
                                             confidence)
        verdicts.append(Verdict(check, value, reason, skipped, unsupported, inconclusive))
    return tuple(verdicts)


def unsupported_reason(check: Check, values: Sequence[float],
                       confidence: float = 0.95) -> str | None:
    """None when the sample supports ``check`` on a percentile (or the median) at
    ``confidence``: the exact distribution-free bound (an order statistic, as MLPerf's early
    stopping uses) lies on the passing side of the limit; else why not, and how many values
    would do (with the same share beyond the limit).  Means and extremes are not judged."""
    quantile = _quantile(check.statistic)
    if quantile is None:
        return None
    from pytest_llmperf.results.statistics import percentile_bound, samples_needed

    side: Literal["upper", "lower"] = "upper" if check.operator in ("<", "<=") else "lower"
    bound = percentile_bound(values, quantile, side, confidence)
    if bound is not None and check.holds(bound):
        return None
    what = "gaps" if check.metric == "itl_ms" else "requests"
    needed = samples_needed(values, quantile, check.limit, side, confidence)
    level = f"{100.0 * confidence:.3g} %"
    if bound is None:
        text = f"{len(values)} {what} are too few to bound {check.statistic} at {level} confidence"
    else:
        text = (f"its {level} confidence bound is {format_number(bound)}, on the wrong side of "
                f"the limit")
    settle = (f"about {needed} {what} would settle it" if needed is not None
              else f"more {what} would not settle it")
    return f"{text}; {settle} (--llmperf-requests)"


def _quantile(stat: str | None) -> float | None:
    if stat == "median":
        return 0.5
    if stat is None or not stat.startswith("p"):
        return None
    value = float(stat[1:]) / 100.0
    return value if 0.0 < value < 1.0 else None


def failure_message(verdicts: Iterable[Verdict], context: str, where: str | None = None) -> str:
    """One line per missed SLO, each ending with ``-- context``; empty when all passed."""
    lines = [f"{v.describe()} -- {context}" for v in verdicts if not v.passed]
    if lines and where:
        lines.append(where)
    return "\n".join(lines)

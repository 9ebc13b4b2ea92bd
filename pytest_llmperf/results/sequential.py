"""How many requests a window needs: as many as it takes to decide its SLOs, measured in stages.

A window whose size the user did not fix (no ``--llmperf-requests``, ``--llmperf-duration``,
``requests=``, ``duration_s=`` or ``@pytest.mark.llmperf(requests=...)``) is planned as a few
*looks*: a first one at ``n0`` requests, then sizes that double, the last one at the cap
(:data:`CAP`, 256 requests; ``--llmperf-window-timeout`` bounds it in time as every window).  At
each look every percentile SLO of the window is either *decided* (its distribution-free bound,
results.statistics, lies on one side of the limit: pass, or its opposite bound on the other:
fail) or not; the window stops at the first look where every SLO is decided.  Means, whole-run
figures and resources are not judged with a bound, so they never keep a window going.

Looking several times and stopping at the first pass would raise the chance of a false pass
above the stated 5 %: the error rate alpha is *spent* over the looks, look k at confidence
1 - alpha_k with the alpha_k summing to alpha (a weighted Bonferroni bound), so the chance that
any look declares a pass that is false stays at or below alpha.  The first look spends what its
size needs for a pass to be possible at all (p95 at 64 requests: 0.95**64, 3.76 % rounded up),
at least an even share alpha / K and at most :data:`FIRST_SHARE` of alpha; the later looks
split the rest evenly.  ``n0`` is the run's ``--llmperf-requests`` default (64), raised where a
percentile SLO the cap can decide could not pass there even at the first look's largest share.
A p95 SLO of the shipped suite thus reads: looks at 64, 128 and 256 requests, at 96.24 %,
99.38 % and 99.38 % confidence.  A window's verdicts use the confidence of the last look it
took.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pytest_llmperf.results.jsonfields import Fields, JSONObject
from pytest_llmperf.results.metrics import DISTRIBUTIONS, summarize
from pytest_llmperf.results.percentiles import quantile_of
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.thresholds import Check

__all__ = ["ALPHA", "CAP", "FIRST_SHARE", "SequentialPlan", "SequentialRule", "WindowSizing",
           "decide", "judged", "percent", "quantile_of"]

ALPHA = 0.05  # the error rate the verdicts state (95 % confidence)
CAP = 256  # the most requests a window sized by its SLOs takes
FIRST_SHARE = 0.8  # the most of alpha the first look may spend
_MAX_LOOKS = 8

Decision = Literal["pass", "fail"] | None


def judged(check: Check) -> bool:
    """The check is on a percentile (or the median) of a per-request distribution: its verdict
    needs a sample large enough to bound it."""
    return check.metric in DISTRIBUTIONS and quantile_of(check.statistic) is not None


def decide(check: Check, values: Sequence[float], confidence: float) -> Decision:
    """"pass" when the bound on the passing side of the limit holds at ``confidence``, "fail"
    when the bound on the other side misses it, None while neither (or too few values)."""
    from pytest_llmperf.results.statistics import percentile_bound  # numpy, when judging

    q = quantile_of(check.statistic)
    if q is None or not values:
        return None
    upper = check.side == "upper"
    passing = percentile_bound(values, q, "upper" if upper else "lower", confidence)
    if passing is not None and check.holds(passing):
        return "pass"
    failing = percentile_bound(values, q, "lower" if upper else "upper", confidence)
    if failing is not None and not check.holds(failing):
        return "fail"
    return None


@dataclass(frozen=True)
class SequentialPlan:
    """The planned looks (sample sizes, the last the cap) and the confidence of each look's
    bounds (1 - alpha_k, the alpha_k summing to alpha: the module says how they are spent)."""

    looks: tuple[int, ...]
    confidences: tuple[float, ...]

    @classmethod
    def for_checks(cls, checks: Sequence[Check], *, first: int = 64, cap: int = CAP,
                   alpha: float = ALPHA, spend: bool = True) -> SequentialPlan:
        """Looks at n0, 2 n0, ... and the cap, with n0 and the confidences as the module says.
        ``spend`` False gives every look the full alpha (the naive rule; for comparison
        only)."""
        from pytest_llmperf.results.statistics import min_samples

        if first < 1 or cap < 1 or not 0.0 < alpha < 1.0:
            raise ValueError(f"need first >= 1, cap >= 1, 0 < alpha < 1 (got {first}, {cap}, "
                             f"{alpha})")
        first = min(first, cap)
        # Percentile SLOs the cap can decide (at the first look's largest share) size the looks.
        sides = [(q, side) for c in checks if judged(c)
                 for q, side in [(quantile_of(c.statistic) or 0.5, _side(c))]
                 if min_samples(q, side, 1.0 - FIRST_SHARE * alpha) <= cap]
        looks: tuple[int, ...] = (cap,)
        for planned in range(1, _MAX_LOOKS + 1):
            first_alpha = alpha
            if spend:
                needs = max((_pass_alpha(q, side, first) for q, side in sides), default=0.0)
                needs = math.ceil(needs * 1e4) / 1e4  # whole 0.01 %: 96.25 %, not 96.2525 %
                first_alpha = min(max(needs, alpha / planned), FIRST_SHARE * alpha)
            needed = [min_samples(q, side, 1.0 - first_alpha) for q, side in sides]
            sizes = [max([first, *needed])]
            while sizes[-1] * 2 < cap:
                sizes.append(sizes[-1] * 2)
            looks = tuple(dict.fromkeys([*sizes, cap]))
            if not spend:
                return cls(looks, (1.0 - alpha,) * len(looks))
            if len(looks) == 1:
                return cls(looks, (1.0 - alpha,))
            if len(looks) <= planned:
                rest = (alpha - first_alpha) / (len(looks) - 1)
                return cls(looks, (1.0 - first_alpha, *(1.0 - rest,) * (len(looks) - 1)))
        return cls(looks, (1.0 - alpha / len(looks),) * len(looks))


def _side(check: Check) -> Literal["upper", "lower"]:
    return "upper" if check.side == "upper" else "lower"


def _pass_alpha(q: float, side: Literal["upper", "lower"], n: int) -> float:
    """The least alpha at which ``n`` values can bound quantile ``q`` on the passing side: the
    chance that all of them fall on that side (q**n for an upper bound, (1-q)**n lower)."""
    return (q if side == "upper" else 1.0 - q) ** n


@dataclass
class SequentialRule:
    """The stop rule of a window sized by its SLOs (load.closed_loop's ``stop``): told the
    records so far, in the order they completed; at each planned look it judges the first
    ``look`` of them and stops the window once every SLO is decided."""

    plan: SequentialPlan
    checks: tuple[Check, ...]
    look: int = 0  # looks taken
    undecided: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        self.undecided = tuple(c.key for c in self.checks if judged(c))

    def __call__(self, records: Sequence[RequestRecord]) -> str | None:
        while self.look < len(self.plan.looks) and len(records) >= self.plan.looks[self.look]:
            size = self.plan.looks[self.look]
            self.look += 1
            self.undecided = self.pending(records[:size], self.plan.confidences[self.look - 1])
            if not self.undecided:
                return (f"every SLO decided at {size} requests (look {self.look} of "
                        f"{len(self.plan.looks)})")
        return None

    def pending(self, records: Sequence[RequestRecord], confidence: float) -> tuple[str, ...]:
        """The keys of the checks these records do not decide at ``confidence``."""
        checks = [c for c in self.checks if judged(c)]
        if not checks:
            return ()
        start = min((r.send_ns for r in records), default=0)
        run = LoadRun(tuple(records), start, max((r.end_ns for r in records), default=start),
                      1, 0)
        values = summarize(run).distributions
        return tuple(dict.fromkeys(
            c.key for c in checks
            if decide(c, values.get(c.metric, ()), confidence) is None))

    def sizing(self, records: Sequence[RequestRecord]) -> WindowSizing:
        """What the window took and why it stopped, once it ended (``records``: all of them);
        a look its records reached but the rule was not asked about is taken now."""
        self(sorted(records, key=lambda r: r.end_ns))
        confidence = self.plan.confidences[max(self.look, 1) - 1]  # the last look's (or first)
        return WindowSizing(self.plan.looks, confidence, self.look, self.undecided)


@dataclass(frozen=True)
class WindowSizing:
    """How a window sized by its SLOs ended: its planned looks, the confidence of the last look
    it took (the first when it took none; its verdicts use it too), the looks taken and the SLOs
    still undecided at the last one."""

    looks: tuple[int, ...]
    confidence: float
    look: int
    undecided: tuple[str, ...] = ()

    def describe(self, requests: int) -> str:
        """``stopped at 64 requests: every SLO decided (look 1 of 3, 96.25 % confidence)``."""
        of = f"look {self.look} of {len(self.looks)}, {percent(self.confidence)} confidence"
        if self.look == 0:
            return (f"stopped at {requests} requests before its first look at "
                    f"{self.looks[0]}: no SLO decided")
        if not self.undecided:
            return f"stopped at {requests} requests: every SLO decided ({of})"
        still = ", ".join(self.undecided)
        if self.look == len(self.looks):
            return f"reached the cap of {self.looks[-1]} requests: {still} still undecided ({of})"
        return f"stopped at {requests} requests: {still} still undecided ({of})"

    def to_json(self) -> JSONObject:
        return {"looks": list(self.looks), "confidence": self.confidence, "look": self.look,
                "undecided": list(self.undecided)}

    @classmethod
    def from_json(cls, fields: Fields) -> WindowSizing:
        return cls(tuple(int(n or 0) for n in fields.numbers("looks")),
                   fields.number("confidence"), fields.integer("look"),
                   fields.texts("undecided"))


def percent(confidence: float) -> str:
    """96.25 %, 99.375 %, 95 %: as many decimals as the value has, up to three."""
    value = 100.0 * confidence
    for decimals in range(3):
        if math.isclose(value, round(value, decimals), abs_tol=1e-9):
            return f"{value:.{decimals}f} %"
    return f"{value:.3f} %"

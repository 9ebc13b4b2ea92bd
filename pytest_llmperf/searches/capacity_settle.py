"""Settling a capacity: the load a search calls its capacity is measured again, its probes'
requests pooled, until its percentile SLOs are decided at the confidence the verdicts state.

A capacity probe measures a dozen requests: enough to steer a bisection, not to bound a p95
(that takes 59 requests at the least).  On a server whose p95 at some load sits near its limit,
one dozen passes and the next fails, and a search that stopped there would find a different
capacity each run.  So once the boundary is found, the capacity load's probes are pooled (each
probe's requests in the order they completed) and looked at as a window sized by its SLOs
would be (results.sequential: looks at 63, 126, 252 requests with the error rate spent over
the looks).  While no look has decided every percentile SLO, the load is measured again, as
many requests as the next look needs, and that probe is judged on the pooled requests.

- Decided passing at a look (a p95 at its first, 63 requests, all within its limit at 96 %
  confidence; a median at 5, 10, 20 or 40): the capacity is settled.
- Failed on the pooled requests: the capacity drops to the load below, settled in turn.
- Undecided: it held on its point estimates, but its requests cannot show at the stated
  confidence that it holds (a p95 with a few requests beyond the limit: the load sits at the
  limit).  It is not counted as holding (``ProbeOutcome.undecided``), and the load below is
  settled.  A pooled probe stops as soon as its look can no longer decide a pass
  (:func:`cannot_pass`), so an undecided load costs few requests.

So the capacity a search reports is the highest load shown to hold at the stated confidence,
and a load at the limit, which passes one dozen and fails the next, is named as undecided
rather than flipping the result from run to run.  Looks beyond :data:`SETTLE_CAP` requests
(a p95's 126 and 252) are not taken: a load whose p95 needs them sits so close to its limit
that a budget of minutes could not tell.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_llmperf.results.capacity import ProbeOutcome
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.sequential import (
    SequentialPlan,
    SequentialRule,
    decide,
    judged,
    percent,
)
from pytest_llmperf.results.thresholds import Check
from pytest_llmperf.results.window import WindowResult

__all__ = ["SETTLE_CAP", "UNDECIDABLE", "PooledSettler", "Settling", "cannot_pass",
           "pooled_records", "pooled_window", "settling_plan", "settling_stop"]

UNDECIDABLE = "cannot be decided passing"  # in the reason a pooled probe stopped early
# The most requests settling pools at one load: a p95's first look (63), a median's first
# looks (5 to 40); later looks would take minutes a load at its limit is not worth.
SETTLE_CAP = 64


@dataclass(frozen=True)
class Settling:
    """Where the capacity load's pooled requests stand: ``more`` requests still to measure
    (0: nothing more to do), and in words what was decided or why not."""

    more: int
    text: str
    decided: bool


def pooled_records(at: Sequence[ProbeOutcome]) -> tuple[RequestRecord, ...]:
    """The requests of these probes (their windows), each probe's in the order they
    completed; a probe read back from the store has none."""
    return tuple(record for probe in at if probe.window is not None
                 for record in sorted(probe.window.run.records, key=lambda r: r.end_ns))


def pooled_window(window: WindowResult, earlier: Sequence[RequestRecord],
                  earlier_s: float) -> WindowResult:
    """``window`` with ``earlier`` requests (measured over ``earlier_s`` seconds at the same
    load) added: its per-request figures are the pool's, its rates the pool's totals over
    the windows' summed spans, its resources and marks its own."""
    run = window.run
    span_ns = int(earlier_s * 1e9) + max(run.window_end_ns - run.window_start_ns, 0)
    pooled = dataclasses.replace(run, records=(*earlier, *run.records), window_start_ns=0,
                                 window_end_ns=span_ns)
    return dataclasses.replace(window, run=pooled, sizing=None, repeats=(), stages=())


@dataclass(frozen=True)
class PooledSettler:
    """Settles a capacity load by pooling its probes.  ``measure(load, requests, earlier,
    earlier_s)`` runs a probe of ``requests`` at ``load`` and judges it with the ``earlier``
    requests pooled (Bench._probe)."""

    checks: tuple[Check, ...]
    measure: Callable[[float, int, Sequence[RequestRecord], float], ProbeOutcome]
    plan: SequentialPlan | None = None

    def state(self, at: Sequence[ProbeOutcome]) -> Settling:
        """What the pooled probes ``at`` one load decide at the looks settling takes (up to
        :data:`SETTLE_CAP` requests), and how many more requests the next look that could
        still decide a pass needs."""
        if not any(judged(check) for check in self.checks):
            return Settling(0, "", True)
        plan = self.plan_for()
        records = pooled_records(at)
        rule = SequentialRule(plan, self.checks)
        if rule(records) is not None:
            size = plan.looks[rule.look - 1]
            return Settling(0, f"every SLO decided on {size} requests of {_probes(at)} "
                               f"({percent(plan.confidences[rule.look - 1])} confidence)", True)
        undecided = ", ".join(rule.undecided)
        ahead = [(n, c) for n, c in zip(plan.looks, plan.confidences, strict=True)
                 if n > len(records) and n in _reachable(plan)]
        if not ahead:
            return Settling(0, f"{undecided} not decided on {len(records)} requests of "
                               f"{_probes(at)}: it sits at its limit", False)
        for look, confidence in ahead:
            if cannot_pass(self.checks, records, look, confidence) is None:
                return Settling(look - len(records),
                                f"{undecided} not decided: {len(records)} requests of "
                                f"{_probes(at)}, a decision needs {look}", False)
        why = cannot_pass(self.checks, records, *ahead[-1])
        return Settling(0, f"{why}: it sits at its limit", False)

    def plan_for(self) -> SequentialPlan:
        return self.plan or settling_plan(self.checks)

    def seconds(self, more: int, at: Sequence[ProbeOutcome]) -> float:
        """How long ``more`` requests at this load will take, at the pace its probes had."""
        done = sum(p.window.requests for p in at if p.window is not None)
        spent = sum(p.duration_s for p in at if p.window is not None)
        return spent * more / done if done else 0.0

    def probe(self, load: float, more: int, at: Sequence[ProbeOutcome]) -> ProbeOutcome:
        earlier = pooled_records(at)
        earlier_s = sum(p.window.run.duration_s for p in at if p.window is not None)
        return self.measure(load, more, earlier, earlier_s)


def settling_plan(checks: Sequence[Check]) -> SequentialPlan:
    """The looks that settle a load: the first where its SLOs' percentiles can first be
    decided (63 requests for a p95, 5 for a median), not a window's 64."""
    return SequentialPlan.for_checks(checks, first=1)


def settling_stop(checks: Sequence[Check], earlier: Sequence[RequestRecord], total: int,
                  plan: SequentialPlan | None = None
                  ) -> Callable[[Sequence[RequestRecord]], str | None]:
    """The stop rule of a probe that settles a load: ``earlier`` requests pooled with those it
    measures, ``total`` in all (a look of the plan); it stops once they have clearly failed
    (searches.probe_rules.clearly_failed) or can no longer decide a pass at that look."""
    from pytest_llmperf.searches.probe_rules import clearly_failed

    plan = plan or settling_plan(checks)
    confidence = next((c for n, c in zip(plan.looks, plan.confidences, strict=True)
                       if n >= total), plan.confidences[-1])

    def stop(done: Sequence[RequestRecord]) -> str | None:
        pooled = (*earlier, *done)
        return (clearly_failed(checks, pooled, total)
                or cannot_pass(checks, pooled, total, confidence))

    return stop


def _reachable(plan: SequentialPlan) -> tuple[int, ...]:
    """The looks settling takes: those up to SETTLE_CAP (at least the first)."""
    return tuple(n for n in plan.looks if n <= SETTLE_CAP) or plan.looks[:1]


def cannot_pass(checks: Sequence[Check], records: Sequence[RequestRecord], look: int,
                confidence: float) -> str | None:
    """Why ``look`` requests, of which ``records`` are the first, cannot decide every
    percentile SLO passing at ``confidence`` however the rest turn out (each is padded with
    the best value it could take); None while they still could."""
    if not records:
        return None
    start = min(r.send_ns for r in records)
    run = LoadRun(tuple(records), start, max(r.end_ns for r in records), 1, 0)
    values = summarize(run).distributions
    missing = max(look - len(records), 0)
    for check in checks:
        if not judged(check):
            continue
        best = -math.inf if check.side == "upper" else math.inf
        padded = [*values.get(check.metric, ()), *(best,) * missing]
        if decide(check, padded, confidence) != "pass":
            beyond = sum(not check.holds(v) for v in values.get(check.metric, ()))
            return (f"{check.key} {UNDECIDABLE} at {look} requests ({percent(confidence)} "
                    f"confidence): {beyond} of {len(records)} already miss {check.text}")
    return None


def _probes(at: Sequence[ProbeOutcome]) -> str:
    return f"{len(at)} probe{'s' if len(at) != 1 else ''}"

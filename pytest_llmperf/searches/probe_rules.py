"""What a capacity search needs from the SLOs beside goodput
(:mod:`pytest_llmperf.results.goodput`): a probe that has clearly failed before its end, and how
close a probe came to its limits.

- Clearly failed (:func:`clearly_failed`): a probe stops sending once the requests it has
  completed already decide an SLO against it:
  - a percentile limit (``ttft_ms.p95 < 1000``) when so many requests are beyond it that the
    percentile of all the requests planned would be beyond it even if every one still to come
    were fast (certain, not a guess);
  - a mean limit when its 99.9 % one-sided t-interval over at least 16 requests lies wholly
    beyond it;
  - ``error_rate`` when the failures so far already exceed the rate allowed of all planned.
- Headroom (:func:`headroom`): for each SLO, measured / limit as a share of the way to failing
  (above 1: missed); a search calls a boundary a *cliff* when the last passing load used at most
  ``CLIFF_HEADROOM`` of every limit and the next load missed one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pytest_llmperf.results.capacity import CLIFF_HEADROOM
from pytest_llmperf.results.metrics import PER_REQUEST, statistic
from pytest_llmperf.results.records import RequestRecord
from pytest_llmperf.results.slo import Verdict
from pytest_llmperf.results.thresholds import Check

__all__ = ["CLIFF_HEADROOM", "clearly_failed", "headroom"]

_MIN_FOR_MEAN = 16
_T_999 = 3.3  # one-sided 99.9 % Student t quantile for 15+ degrees of freedom, rounded up


def _answered(record: RequestRecord) -> bool:
    """Completed as far as the load loop can tell (the final judgement comes after)."""
    return record.ok


def clearly_failed(checks: Sequence[Check], records: Sequence[RequestRecord],
                   planned: int) -> str | None:
    """Why the requests so far already fail an SLO for a window of ``planned`` requests."""
    done = [r for r in records if _answered(r)]
    failed = len(records) - len(done)
    for check in checks:
        if check.metric == "error_rate" and check.operator in ("<", "<="):
            if not check.holds(failed / planned):
                return (f"{failed} of {planned} planned requests failed already: "
                        f"{check.text} cannot hold")
            continue
        if check.metric not in PER_REQUEST or check.statistic is None:
            continue
        values = [v for v in (PER_REQUEST[check.metric](r) for r in done) if v is not None]
        reason = _decided(check, values, planned)
        if reason:
            return reason
    return None


def _decided(check: Check, values: Sequence[float], planned: int) -> str | None:
    stat = check.statistic or ""
    if stat.startswith("p") or stat == "median":
        q = 50.0 if stat == "median" else float(stat[1:])
        # The planned window's percentile interpolates between sorted ranks floor(r) and
        # floor(r) + 1, r = (planned - 1) q / 100: once planned - floor(r) values miss the
        # limit, every rank from floor(r) up misses it, whatever the rest are.
        missing = sum(not check.holds(v) for v in values)
        if missing >= planned - math.floor((planned - 1) * q / 100):
            return (f"{missing} of {planned} planned requests already miss {check.text}: its "
                    f"{stat} cannot meet it")
        return None
    if stat == "mean" and len(values) >= _MIN_FOR_MEAN:
        mean = statistic(values, "mean")
        spread = statistic(values, "stdev") * math.sqrt(len(values) / (len(values) - 1))
        margin = _T_999 * spread / math.sqrt(len(values))
        beyond = mean - margin if check.operator in ("<", "<=") else mean + margin
        if not check.holds(beyond):
            return (f"the mean of {len(values)} requests, {mean:.3g}, is beyond {check.text} "
                    f"with 99.9 % confidence")
    return None


def headroom(verdicts: Iterable[Verdict]) -> float | None:
    """The largest measured / limit over the verdicts, as the share of the way to missing
    (a higher-is-better limit counts limit / measured); None when nothing was measured."""
    shares = []
    for verdict in verdicts:
        measured, limit = verdict.measured, verdict.check.limit
        if measured is None or verdict.skipped:
            continue
        if verdict.check.operator in ("<", "<="):
            shares.append(measured / limit if limit > 0 else (0.0 if measured <= 0 else 2.0))
        else:
            shares.append(limit / measured if measured > 0 else math.inf)
    return max(shares) if shares else None

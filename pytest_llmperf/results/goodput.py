"""Goodput: completed requests whose own TTFT, TPOT, E2EL, decode speed (and, open loop,
latencies from the schedule) each meet every SLO written on that metric, whatever its statistic,
divided by the measured window (req/s), as vLLM's ``--goodput`` and AIPerf define it (the
DistServe definition).  ``tpot_ms.p95 < 100`` makes a request good only if its own TPOT is
under 100 ms."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_llmperf.results.metrics import PER_REQUEST
from pytest_llmperf.results.records import LoadRun
from pytest_llmperf.results.thresholds import Check

__all__ = ["goodput"]


def goodput(run: LoadRun, checks: Iterable[Check]) -> float | None:
    """Requests meeting every per-request SLO / measured window, req/s (None: no window)."""
    wanted = [c for c in checks if c.metric in PER_REQUEST]
    if run.duration_s <= 0:
        return None
    good = 0
    for record in run.records:
        if not record.ok:
            continue
        values = ((check, PER_REQUEST[check.metric](record)) for check in wanted)
        # A value the request does not have (a one-chunk answer has no TPOT) is not held
        # against it: it is counted where the client saw it, in untimed_decodes.
        if all(value is None or check.holds(value) for check, value in values):
            good += 1
    return good / run.duration_s

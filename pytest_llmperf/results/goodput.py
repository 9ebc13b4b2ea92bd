"""Goodput: completed requests whose own TTFT, TPOT, E2EL, decode speed (and, open loop,
latencies from the schedule) each meet every SLO written on that metric, whatever its statistic,
divided by the measured window (req/s), as vLLM's ``--goodput`` and AIPerf define it (the
DistServe definition).  ``tpot_ms.p95 < 100`` makes a request good only if its own TPOT is
under 100 ms.

In every window held to SLOs (:func:`goodput_figures`) it is three metrics: ``goodput_req_s``,
``goodput_tokens_s`` (the output tokens of the good requests per second) and ``goodput_pct``
(good requests / every request of the window, failed ones included), themselves usable in
SLOs (``goodput_pct >= 95``)."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_llmperf.results.metrics import PER_REQUEST
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.thresholds import Check

__all__ = ["GOODPUT", "good_requests", "goodput", "goodput_figures", "no_goodput_reason"]

GOODPUT = ("goodput_req_s", "goodput_tokens_s", "goodput_pct")


def goodput(run: LoadRun, checks: Iterable[Check]) -> float | None:
    """Requests meeting every per-request SLO / measured window, req/s (None: no window)."""
    if run.duration_s <= 0:
        return None
    return len(good_requests(run, checks)) / run.duration_s


def good_requests(run: LoadRun, checks: Iterable[Check]) -> list[RequestRecord]:
    """The completed requests whose own values meet every per-request SLO of ``checks``."""
    wanted = [c for c in checks if c.metric in PER_REQUEST]
    good = []
    for record in run.records:
        if not record.ok:
            continue
        values = ((check, PER_REQUEST[check.metric](record)) for check in wanted)
        # A value the request does not have (a one-chunk answer has no TPOT) is not held
        # against it: it is counted where the client saw it, in untimed_decodes.
        if all(value is None or check.holds(value) for check, value in values):
            good.append(record)
    return good


def no_goodput_reason(run: LoadRun, checks: Iterable[Check]) -> str | None:
    """Why a window has no goodput figures (None: it has them)."""
    if not any(c.metric in PER_REQUEST for c in checks):
        return ("no per-request SLO (ttft_ms, tpot_ms, e2el_ms, decode_tokens_per_s, ...) "
                "says which requests are good")
    if run.duration_s <= 0 or not run.records:
        return "the window has no request"
    return None


def goodput_figures(run: LoadRun, checks: Iterable[Check]) -> dict[str, float]:
    """``goodput_req_s``, ``goodput_tokens_s`` and ``goodput_pct`` of a window under its
    SLOs; empty when :func:`no_goodput_reason` says why not."""
    checks = tuple(checks)
    if no_goodput_reason(run, checks) is not None:
        return {}
    good = good_requests(run, checks)
    return {"goodput_req_s": len(good) / run.duration_s,
            "goodput_tokens_s": sum(r.output_tokens for r in good) / run.duration_s,
            "goodput_pct": 100.0 * len(good) / len(run.records)}

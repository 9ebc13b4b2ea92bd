"""A concurrency sweep: throughput and per-user speed at 1, 2 and 4 users, each point its own
warm-up and measured window, with a table and a chart; every point is held to the SLOs.  The
points are small (8 requests: a curve, not a p95 to rely on) so the default suite stays quick;
a sweep of your own takes any size (``llmperf_sweep(users=..., requests=64)``)."""

from __future__ import annotations

from pytest_llmperf import SLOChecker, SweepFunction, Target

USERS = (1, 2, 4)
REQUESTS = 8


def test_sweep_users(llmperf_target: Target, llmperf_sweep: SweepFunction,
                     llmperf_slo: SLOChecker) -> None:
    sweep = llmperf_sweep(users=USERS, requests=REQUESTS)
    llmperf_slo.check(sweep)

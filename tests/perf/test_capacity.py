"""Capacity: the most concurrent users, and the highest request rate, at which every SLO of
the test still holds, with the goodput there, the SLO that broke first and how sure it is.

Bounded by --llmperf-capacity-budget (seconds per search) and --llmperf-capacity-max-users /
--llmperf-capacity-max-rate; each probe measures --llmperf-probe-requests requests.  The
capacity itself can be held to an SLO in thresholds.toml (``capacity_max_concurrency >= 8``).
"""

from __future__ import annotations

from pytest_llmperf import CapacityFunction, SLOChecker, Target


def test_capacity_users(llmperf_target: Target, llmperf_capacity: CapacityFunction,
                        llmperf_slo: SLOChecker) -> None:
    capacity = llmperf_capacity("users")
    llmperf_slo.check(capacity)


def test_capacity_rate(llmperf_target: Target, llmperf_capacity: CapacityFunction,
                       llmperf_slo: SLOChecker) -> None:
    capacity = llmperf_capacity("rate")
    llmperf_slo.check(capacity)

"""Single-user latency: how fast one answer streams when the server has nothing else to do."""

from __future__ import annotations

from pytest_llmperf import LoadFunction, SLOChecker, Target


def test_single_user_latency(llmperf_target: Target, llmperf_load: LoadFunction,
                             llmperf_slo: SLOChecker) -> None:
    result = llmperf_load(users=1)
    llmperf_slo.check(result)

"""Concurrent users: throughput and the decode speed each user still gets.

One test per --llmperf-users value (default 4): ``test_concurrent_users[...-users4]``.
"""

from __future__ import annotations

from pytest_llmperf import LoadFunction, SLOChecker, Target


def test_concurrent_users(llmperf_target: Target, llmperf_users: int, llmperf_load: LoadFunction,
                          llmperf_slo: SLOChecker) -> None:
    result = llmperf_load(users=llmperf_users)
    llmperf_slo.check(result)

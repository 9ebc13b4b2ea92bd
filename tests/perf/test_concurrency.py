"""Concurrent users: throughput and the decode speed each user still gets.

One test per --llmperf-users value (default 4): ``test_concurrent_users[...-users4]``.
"""

from __future__ import annotations

from typing import Any


def test_concurrent_users(llmperf_target: Any, llmperf_users: int, llmperf_load: Any,
                          llmperf_slo: Any) -> None:
    result = llmperf_load(users=llmperf_users)
    llmperf_slo.check(result)

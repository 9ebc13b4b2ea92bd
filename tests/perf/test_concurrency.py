"""Concurrent users: throughput and the decode speed each user still gets."""

from __future__ import annotations

from typing import Any

USERS = 4


def test_concurrent_users(llmperf_target: Any, llmperf_load: Any, llmperf_slo: Any) -> None:
    result = llmperf_load(users=USERS)
    llmperf_slo.check(result)

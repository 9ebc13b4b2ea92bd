"""Single-user latency: how fast one answer streams when the server has nothing else to do."""

from __future__ import annotations

from typing import Any


def test_single_user_latency(llmperf_target: Any, llmperf_load: Any, llmperf_slo: Any) -> None:
    result = llmperf_load(users=1)
    llmperf_slo.check(result)

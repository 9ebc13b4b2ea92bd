"""Requests arriving at a rate (open loop), whatever the server does: the latency users get
at that traffic, and whether the server sustains it at all.

One test per --llmperf-rate value (default 1 req/s), with --llmperf-arrivals,
--llmperf-burstiness and --llmperf-max-concurrency shaping the arrivals.  A rate the server
cannot sustain fails as overloaded, with the rate it did sustain.
"""

from __future__ import annotations

from typing import Any


def test_request_rate(llmperf_target: Any, llmperf_rate: float, llmperf_load: Any,
                      llmperf_slo: Any) -> None:
    result = llmperf_load(rate=llmperf_rate)
    llmperf_slo.check(result)

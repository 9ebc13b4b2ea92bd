"""Requests arriving at a rate (open loop), whatever the server does: the latency users get
at that traffic, and whether the server sustains it at all.

One test per --llmperf-rate value (default 0.5 req/s), with --llmperf-arrivals,
--llmperf-burstiness and --llmperf-max-concurrency shaping the arrivals.  The window is sized
in time, as the rate sets the count: --llmperf-duration seconds of arrivals, 40 by default
(20 requests at 0.5 req/s; 2000 at 50); ``inf`` sends --llmperf-requests at once.  A rate
the server cannot sustain fails as overloaded, with the rate it did sustain.
"""

from __future__ import annotations

import math

from pytest_llmperf import LoadFunction, Settings, SLOChecker, Target

WINDOW_S = 40.0


def test_request_rate(llmperf_target: Target, llmperf_rate: float, llmperf_load: LoadFunction,
                      llmperf_slo: SLOChecker, llmperf_settings: Settings) -> None:
    if math.isinf(llmperf_rate):  # all at once: a burst of --llmperf-requests, not a duration
        result = llmperf_load(rate=llmperf_rate, requests=llmperf_settings.load.requests)
    else:
        result = llmperf_load(rate=llmperf_rate,
                              duration_s=llmperf_settings.load.duration or WINDOW_S)
    llmperf_slo.check(result)

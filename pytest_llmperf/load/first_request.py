"""The first request a launched engine answers once it is ready: its TTFT is what the first
user after a cold start (a new replica, a restart after an upgrade) waits, lazy loading,
graph capture and first allocations included; the warm-up of every measured window hides it.
"""

from __future__ import annotations

import dataclasses

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.metrics import ttft_ms
from pytest_llmperf.settings.groups import DEFAULT_LIMITS, TimeLimits

__all__ = ["first_request_ttft_ms"]


def first_request_ttft_ms(served: ServedModel, *, seed: int = 0, max_tokens: int = 8,
                          limits: TimeLimits = DEFAULT_LIMITS) -> float | None:
    """The TTFT (ms) of one short request sent now; None when it failed (the tests that
    follow say why, with their own requests)."""
    # Its engine metrics are of no use here: no scrape around this one request.
    alone = dataclasses.replace(served, metrics_url=None, more_metrics_urls=())
    window = run_load(alone, BuiltinPrompts(seed=seed), users=1, requests=1,
                      max_tokens=max_tokens, limits=limits)
    record, = window.run.records
    return ttft_ms(record) if record.ok else None

"""Run one load shape against a served model and keep everything the report needs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pytest_llmperf.backends import ServedModel
from pytest_llmperf.client import StreamingClient
from pytest_llmperf.loadgen import run_closed_loop
from pytest_llmperf.metrics import RunMetrics, summarize
from pytest_llmperf.prompts import PromptSource
from pytest_llmperf.records import LoadRun

__all__ = ["PerfResult", "run_load"]


@dataclass(frozen=True)
class PerfResult:
    """One measured window: the load that was offered, the records and their metrics."""

    served: ServedModel
    run: LoadRun
    metrics: RunMetrics
    users: int
    max_tokens: int

    @property
    def context(self) -> str:
        """``64 requests, smollm2-135m on llamacpp (xllamacpp 2026.10.11549)``."""
        return f"{len(self.run.records)} requests, {self.served.description}"


def run_load(
    served: ServedModel,
    prompts: PromptSource,
    *,
    users: int,
    requests: int | None = None,
    duration_s: float | None = None,
    warmup: int = 0,
    max_tokens: int = 64,
    timeout_s: float = 600.0,
) -> PerfResult:
    """Closed-loop load with ``users`` users; see ``loadgen.run_closed_loop``."""

    async def measure() -> LoadRun:
        async with StreamingClient(served.endpoint, max_tokens=max_tokens,
                                   token_counter=served.token_counter,
                                   timeout_s=timeout_s) as client:
            return await run_closed_loop(client, prompts, users=users, requests=requests,
                                         duration_s=duration_s, warmup=warmup)

    run = asyncio.run(measure())
    return PerfResult(served=served, run=run, metrics=summarize(run), users=users,
                      max_tokens=max_tokens)

"""A replayed trace against the real embedded engine: the blocks the trace shares come back
as prompt tokens the server served from its prefix cache within a run, and a second run (a
fresh salt) finds none of them cached."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pytest_llmperf.clients.openai import StreamingClient
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.prompts.trace_files import Trace, TraceRequest
from pytest_llmperf.prompts.trace_prompts import TracePrompts
from pytest_llmperf.results.records import RequestRecord

pytestmark = pytest.mark.integration

# A system prompt (block 7) asked under twice, then a short chat of its own.
TRACE = Trace(Path("trace.jsonl"), "jsonl", (
    TraceRequest(0.0, 560, 2, (7,)), TraceRequest(1.0, 548, 2, (7,)), TraceRequest(2.0, 40, 2)))


def replay_in_order(served: ServedModel) -> list[RequestRecord]:
    """The trace's requests one after another (the cache, not the timing, is under test)."""
    assert served.tokenizer is not None and served.endpoint is not None
    source = TracePrompts(served.tokenizer, TRACE, seed=1)
    prompts = [source.next_prompt() for _ in TRACE.requests]
    endpoint = served.endpoint

    async def send() -> list[RequestRecord]:
        async with StreamingClient(endpoint, max_tokens=8) as client:
            return [await client.send(i, prompt) for i, prompt in enumerate(prompts)]

    records = asyncio.run(send())
    assert all(r.error is None for r in records), [r.error for r in records]
    return records


def test_shared_blocks_are_cached_within_a_run_and_not_across_runs(
        smollm2_served: ServedModel) -> None:
    first, second = replay_in_order(smollm2_served), replay_in_order(smollm2_served)
    cached = [[r.cached_tokens for r in run] for run in (first, second)]
    print(f"\ncached prompt tokens, run 1: {cached[0]}, run 2: {cached[1]}")
    for run in cached:
        assert all(c is not None for c in run), run
        # The first ask of the block finds only the chat template's head (its 30 tokens) ...
        assert run[0] is not None and run[0] < 64
        # ... the second ask under the same block is served its 512 tokens from the cache.
        assert run[1] is not None and run[1] >= 512
    # Answers are forced to the trace's lengths.
    assert [r.output_tokens for r in first] == [2, 2, 2]

"""Structured output against the real embedded engine: llama.cpp constrains its answers to the
schema (every one parses and matches), and an answer cut off by max_tokens is caught as
``invalid_output``, not counted as a completed request."""

from __future__ import annotations

import asyncio

import pytest

from pytest_llmperf.clients.openai import StreamingClient
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.prompts.structured import StructuredPrompts
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.records import RequestRecord

pytestmark = pytest.mark.integration


def ask(served: ServedModel, requests: int, max_tokens: int) -> list[RequestRecord]:
    assert served.endpoint is not None
    endpoint, source = served.endpoint, StructuredPrompts(seed=5)

    async def send() -> list[RequestRecord]:
        async with StreamingClient(endpoint, max_tokens=max_tokens) as client:
            return [await client.send(i, source.next_prompt()) for i in range(requests)]

    return asyncio.run(send())


def test_answers_follow_the_schema_and_a_cut_one_is_invalid(smollm2_served: ServedModel) -> None:
    records = ask(smollm2_served, 3, 192)
    assert all(r.ok and r.schema_checked for r in records), [r.error for r in records]
    # Lengths are the objects' own: the engine forces answer lengths otherwise.
    lengths = [r.output_tokens for r in records]
    print(f"\nstructured answers: {lengths} tokens, finish {[r.finish_reason for r in records]}")
    assert all(r.finish_reason == "stop" and r.output_tokens < 192 for r in records)
    (cut,) = ask(smollm2_served, 1, 6)
    assert cut.error_kind == ErrorKind.INVALID_OUTPUT.value, cut.error
    assert cut.finish_reason == "length" and "not JSON" in (cut.error or "")

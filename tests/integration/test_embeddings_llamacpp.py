"""Embeddings on the real embedded engine: llama.cpp launched with --embeddings (only when
asked: the chat server is launched without) answers batches of inputs, each request with
one vector per input and the prompt tokens of all of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import builtin_catalog
from pytest_llmperf.engines.llamacpp import LlamaCppBackend
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.prompts.embedding_batches import EmbeddingBatches
from pytest_llmperf.settings.resolve import resolve_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    settings = resolve_settings({"endpoint": "embeddings"}, {}, {},
                                tmp_path_factory.mktemp("embeddings"))
    entry = builtin_catalog().entries["smollm2-135m"]
    with LlamaCppBackend().serve(settings.server, entry, settings.server.output_dir) as served:
        yield served.with_api("embeddings")


def test_batches_of_inputs_come_back_as_vectors(embedder: ServedModel) -> None:
    window = run_load(embedder, EmbeddingBatches(BuiltinPrompts(seed=2), 4), users=2,
                      requests=6, warmup=1)
    records = window.run.records
    assert all(r.ok for r in records), [r.error for r in records]
    assert [r.embedded_inputs for r in records] == [4] * 6
    assert all(r.chunk_ns == () and r.input_tokens for r in records)
    inputs, tokens = (window.metrics.value("embedded_inputs_per_s"),
                      window.metrics.value("input_token_throughput"))
    latency = window.metrics.value("e2el_ms", "median")
    print(f"\nembeddings, batch 4, 2 users: {inputs:.1f} inputs/s, {tokens:.0f} input tok/s, "
          f"median latency {latency:.0f} ms; prompt tokens per request "
          f"{[r.input_tokens for r in records]}")
    assert inputs and tokens and inputs * 5 < tokens  # each input is tens of tokens
    assert window.metrics.value("ttft_ms", "median") is None


def test_the_chat_server_is_launched_without_embeddings(tmp_path: Path) -> None:
    settings = resolve_settings({}, {}, {}, tmp_path)
    entry = builtin_catalog().entries["smollm2-135m"]
    source = entry.source(("gguf",))
    assert source is not None
    backend = LlamaCppBackend()
    chat = backend.server_args(settings.server, source, 8080)
    embeddings = backend.server_args(
        dataclasses.replace(settings.server, endpoint="embeddings"), source, 8080)
    assert "--embeddings" not in chat
    assert embeddings[-3:] == ("--embeddings", "--pooling", "mean")

"""The embeddings client: a batch of inputs in one request, its latency to the whole answer,
the server's prompt-token count, the vectors checked against the inputs; a window of such
requests has no streamed metric (those SLOs are skipped, with why) and its own throughputs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.embeddings import EmbeddingsClient
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.prompts.embedding_batches import EmbeddingBatches
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.judge import judge_window
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.thresholds import parse_check
from pytest_llmperf.results.window import WindowResult

DELAY_S = 0.05


class Embedder:
    """Answers /v1/embeddings after DELAY_S with one 4-dimensional vector per input (or
    ``vectors`` of them), 3 tokens an input; remembers the bodies."""

    def __init__(self, vectors: int | None = None, status: int = 200) -> None:
        self.vectors = vectors
        self.status = status
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        await asyncio.sleep(DELAY_S)
        if self.status != 200:
            return web.json_response({"error": {"message": "no embeddings here"}},
                                     status=self.status)
        count = len(body["input"]) if self.vectors is None else self.vectors
        return web.json_response({
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]}
                     for i in range(count)],
            "usage": {"prompt_tokens": 3 * len(body["input"]), "total_tokens": 0}})


def embed(server: Embedder, prompt: Prompt) -> RequestRecord:
    async def run() -> RequestRecord:
        async def route(request: web.Request) -> web.Response:
            return await server(request)

        app = web.Application()
        app.router.add_post("/v1/embeddings", route)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
            endpoint = Endpoint(url, "m", api="embeddings", extra_body={"cache_prompt": False})
            async with EmbeddingsClient(endpoint, max_tokens=8) as client:
                return await client.send(3, prompt)
        finally:
            await runner.cleanup()

    return asyncio.run(run())


def test_a_batch_is_one_request_timed_to_its_whole_answer() -> None:
    server = Embedder()
    record = embed(server, Prompt("first", batch=("second", "third")))
    assert server.bodies[0]["input"] == ["first", "second", "third"]
    assert server.bodies[0]["encoding_format"] == "float" and "max_tokens" not in server.bodies[0]
    assert record.ok and record.embedded_inputs == 3 and record.input_tokens == 9
    assert record.chunk_ns == () and record.output_tokens == 0
    assert (record.end_ns - record.send_ns) / 1e9 >= DELAY_S
    assert judge(record, 64).ok  # nothing was forced: an embedding has no answer length


def test_too_few_vectors_or_a_refusal_fail_with_the_reason() -> None:
    short = embed(Embedder(vectors=1), Prompt("a", batch=("b",)))
    assert short.error_kind == ErrorKind.MALFORMED.value and not short.ok
    assert short.error == "the answer holds 1 vector(s) for 2 input(s)"
    refused = embed(Embedder(status=501), Prompt("a"))
    assert refused.error_kind == ErrorKind.HTTP_5XX.value and "no embeddings here" in (
        refused.error or "")


def test_batches_take_that_many_prompts_each() -> None:
    source = EmbeddingBatches(BuiltinPrompts(seed=1, salt="s"), 4)
    first, second = source.next_prompt(), source.next_prompt()
    assert len(first.batch) == 3 == len(second.batch)
    texts = [first.text, *first.batch, second.text, *second.batch]
    assert len(set(texts)) == 8  # every input its own (salted) prompt
    assert source.describe().details["embedding_batch"] == 4


def test_an_embeddings_window_skips_streamed_slos_and_has_its_throughputs() -> None:
    records = tuple(RequestRecord(i, i * 100_000_000, (), i * 100_000_000 + 40_000_000,
                                  input_tokens=24, embedded_inputs=8) for i in range(10))
    window = WindowResult(ServedInfo("llamacpp", "m", "x"), LoadShape.closed(1), 8,
                          LoadRun(records, 0, 1_000_000_000, 1, 0))
    assert window.metrics.value("e2el_ms", "median") == 40.0
    assert window.metrics.value("embedded_inputs_per_s") == 80.0
    assert window.metrics.value("input_token_throughput") == 240.0
    assert window.metrics.value("ttft_ms", "p95") is None
    checks = [parse_check(text, "test") for text in (
        "ttft_ms.p95 < 1000", "embedded_inputs_per_s >= 50", "e2el_ms.median < 100")]
    verdicts = {v.check.key: v for v in judge_window(window, checks)}
    assert verdicts["ttft_ms.p95"].skipped
    assert verdicts["ttft_ms.p95"].unmeasured_reason == "an embeddings request streams no token"
    assert verdicts["embedded_inputs_per_s"].passed and verdicts["e2el_ms.median"].passed
    assert json.dumps(window.to_json())  # stored like any window

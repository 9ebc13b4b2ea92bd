"""StreamingClient against a local aiohttp stub that replays recorded OpenAI-style SSE traffic.

The stub is a measuring instrument: it writes each scripted network write on its own, with a
pause between writes, and records what the client sent (JSON body, headers, peer address).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import web

from pytest_llmperf.clients.openai import Endpoint, StreamingClient, build_payload
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.results.records import RequestRecord, TokenSource

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DELAY_S = 0.03  # pause between two scripted network writes
MODEL = "qwen2.5-0.5b-instruct"
PROMPT = "What is the capital of France? Answer in one sentence."


# --- recorded traffic ------------------------------------------------------------------------


def sse(message: Mapping[str, Any] | str) -> bytes:
    """One SSE event as a server writes it: ``data: ...`` and a blank line."""
    data = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def chat_chunk(delta: Mapping[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """A llama.cpp (llama-server) chat.completion.chunk."""
    return {
        "choices": [{"finish_reason": finish_reason, "index": 0, "delta": dict(delta)}],
        "created": 1735000000,
        "id": "chatcmpl-x5Yc0Lw3yPZ8bC1qQW3sE2h7xgJ9q1Ra",
        "model": MODEL,
        "system_fingerprint": "b5280-27aa2597",
        "object": "chat.completion.chunk",
    }


def content(text: str) -> bytes:
    return sse(chat_chunk({"content": text}))


ROLE = sse(chat_chunk({"role": "assistant", "content": None}))
FINISH = sse(chat_chunk({}, finish_reason="length"))
TIMINGS = {
    "prompt_n": 34,
    "prompt_ms": 21.4,
    "prompt_per_token_ms": 0.629,
    "prompt_per_second": 1588.8,
    "predicted_n": 8,
    "predicted_ms": 95.2,
    "predicted_per_token_ms": 11.9,
    "predicted_per_second": 84.03,
}
USAGE = sse(
    {
        "choices": [],
        "created": 1735000000,
        "id": "chatcmpl-x5Yc0Lw3yPZ8bC1qQW3sE2h7xgJ9q1Ra",
        "model": MODEL,
        "system_fingerprint": "b5280-27aa2597",
        "object": "chat.completion.chunk",
        "usage": {"completion_tokens": 8, "prompt_tokens": 34, "total_tokens": 42},
        "timings": TIMINGS,
    }
)
DONE = sse("[DONE]")

# llama.cpp's chat stream for max_tokens=8, as the network delivered it: one entry per write.
# Writes 2 to 6 carry text (5 reads); the role-only, finish and usage-only writes do not.
CHAT_STREAM: tuple[bytes, ...] = (
    ROLE,
    content("The"),
    content(" capital") + content(" of"),  # two events in one network read
    content(" France"),
    content(" is") + content(" Paris") + content("."),  # three events in one read
    content(" It"),
    FINISH,
    USAGE,
    DONE,
)
CHAT_TEXT = "The capital of France is Paris. It"
CHAT_TEXT_READS = 5


def text_chunk(text: str, finish_reason: str | None = None) -> bytes:
    """A /v1/completions stream chunk (``choices[].text``)."""
    return sse(
        {
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            ],
            "created": 1735000000,
            "id": "cmpl-4QkZp1",
            "model": MODEL,
            "object": "text_completion",
        }
    )


# --- the stub server -------------------------------------------------------------------------


@dataclass
class Received:
    body: dict[str, Any]
    headers: Mapping[str, str]
    path: str
    peer: Any


@dataclass
class Replay:
    """Answers every request by writing ``writes`` one at a time, ``delay_s`` apart."""

    writes: Sequence[bytes] = CHAT_STREAM
    delay_s: float = DELAY_S
    status: int = 200
    connection_close: bool = False  # answer with "Connection: close"
    drop_after: bool = False  # close the socket after the answer, without saying so
    received: list[Received] = field(default_factory=list)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.received.append(
            Received(
                body=await request.json(),
                headers=dict(request.headers),
                path=request.path,
                peer=request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        if self.status != 200:
            return web.Response(
                status=self.status, body=b"".join(self.writes), content_type="application/json"
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        if self.connection_close:
            response.force_close()
        await response.prepare(request)
        for index, data in enumerate(self.writes):
            if index:
                await asyncio.sleep(self.delay_s)
            await response.write(data)
        await response.write_eof()
        if self.drop_after and request.transport is not None:
            request.transport.close()
        return response


async def _serve(handler: Handler, use: Callable[[str], Awaitable[T]]) -> T:
    async def route(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", route)
    app.router.add_post("/v1/completions", route)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return await use(f"http://127.0.0.1:{port}/v1")
    finally:
        await runner.cleanup()


def with_stub(handler: Handler, use: Callable[[str], Awaitable[T]]) -> T:
    """Start the stub on a free port, run ``use(base_url)`` against it, then clean up."""
    return asyncio.run(_serve(handler, use))


def send_one(
    handler: Handler,
    *,
    api: str = "chat",
    token_counter: Any = None,
    timeout_s: float = 5.0,
    max_tokens: int = 8,
    **endpoint: Any,
) -> RequestRecord:
    async def use(base_url: str) -> RequestRecord:
        target = Endpoint(base_url, MODEL, api=api, **endpoint)  # type: ignore[arg-type]
        async with StreamingClient(target, max_tokens=max_tokens, timeout_s=timeout_s) as client:
            return await client.send(7, PROMPT)

    # What the runner does after the window: the tokenizer counts what usage did not.
    [record] = count_missing_tokens([with_stub(handler, use)], token_counter)
    return record


class WordCounter:
    """A stand-in tokenizer: one token per whitespace-separated word; remembers what it saw.
    A prompt counts two more, as if a chat template wrapped it."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def count_text(self, text: str) -> int:
        self.asked.append(text)
        return len(text.split())

    def count_prompt(self, prompt: str) -> int:
        return self.count_text(prompt) + 2


def assert_failed(record: RequestRecord, *fragments: str, kind: str | None = None) -> None:
    assert not record.ok
    assert record.error is not None
    for fragment in fragments:
        assert fragment in record.error, record.error
    if kind is not None:
        assert record.error_kind == kind, (record.error_kind, record.error)


# --- a good answer ---------------------------------------------------------------------------


def test_chat_stream_one_reading_per_read_that_carried_text() -> None:
    stub = Replay()
    record = send_one(stub)

    assert record.error is None
    assert record.ok
    assert record.request_id == 7
    assert record.finish_reason == "length"
    # Role-only, finish, usage-only and [DONE] writes are not tokens; a read carrying
    # several content events is one reading.
    assert len(record.chunk_ns) == CHAT_TEXT_READS
    assert list(record.chunk_ns) == sorted(set(record.chunk_ns))
    assert record.send_ns < record.chunk_ns[0] <= record.chunk_ns[-1] <= record.end_ns
    # The first text was written one pause after the role chunk, so it cannot have come sooner.
    assert record.chunk_ns[0] - record.send_ns >= 0.9 * DELAY_S * 1e9


def test_token_counts_and_timings_come_from_the_usage_block() -> None:
    counter = WordCounter()
    record = send_one(Replay(), token_counter=counter)

    assert record.output_tokens == 8
    assert record.output_token_source is TokenSource.USAGE
    assert record.input_tokens == 34
    assert record.input_token_source is TokenSource.USAGE
    assert record.server_timings == TIMINGS
    assert record.server_timings["predicted_per_token_ms"] == pytest.approx(11.9)
    assert counter.asked == []  # the server's numbers win; the tokenizer is not asked


def test_text_completions_stream() -> None:
    stub = Replay(
        writes=(
            text_chunk(" Paris"),
            text_chunk(" is") + text_chunk(" the"),
            text_chunk(" capital", finish_reason="length"),
            sse(
                {
                    "choices": [],
                    "object": "text_completion",
                    "usage": {"completion_tokens": 4, "prompt_tokens": 12, "total_tokens": 16},
                }
            ),
            DONE,
        )
    )
    record = send_one(stub, api="completions")

    assert record.error is None
    assert record.ok
    assert len(record.chunk_ns) == 3
    assert record.output_tokens == 4
    assert record.output_token_source is TokenSource.USAGE
    assert record.input_tokens == 12
    assert record.finish_reason == "length"
    assert record.server_timings == {}
    assert [r.path for r in stub.received] == ["/v1/completions"]
    body = stub.received[0].body
    assert body["prompt"] == PROMPT
    assert "messages" not in body


def test_reasoning_content_counts_as_generated_text() -> None:
    stub = Replay(
        writes=(
            ROLE,
            sse(chat_chunk({"reasoning_content": "Okay, the user asks"})),
            sse(chat_chunk({"reasoning_content": " about France."})),
            content("Paris."),
            sse(chat_chunk({}, finish_reason="stop")),
            DONE,
        )
    )
    counter = WordCounter()
    record = send_one(stub, token_counter=counter)

    assert record.error is None
    assert record.ok
    assert len(record.chunk_ns) == 3  # two reasoning reads and one content read
    assert record.output_token_source is TokenSource.TOKENIZER
    assert counter.asked[0] == "Okay, the user asks about France.Paris."
    assert record.output_tokens == 6
    # TTFT stays the first reasoning read; the answer is the third read.
    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == record.answer_end_ns == record.chunk_ns[2]
    assert counter.asked[-1] == "Okay, the user asks about France."
    assert record.reasoning_tokens == 6
    assert record.reasoning_token_source is TokenSource.TOKENIZER


def test_without_usage_the_tokenizer_counts_the_generated_text() -> None:
    reply = ("Paris", " is", " the", " capital", " of", " France.")
    stub = Replay(
        writes=(
            ROLE,
            *(content(piece) for piece in reply),
            sse(chat_chunk({}, finish_reason="stop")),
            DONE,
        )
    )
    counter = WordCounter()
    record = send_one(stub, token_counter=counter)

    text = "".join(reply)
    assert record.error is None
    assert record.ok
    assert len(record.chunk_ns) == len(reply)
    assert counter.asked == [text, PROMPT]
    # Tokens, as the tokenizer counted them: never characters.
    assert record.output_tokens == 6 != len(text)
    assert record.output_token_source is TokenSource.TOKENIZER
    assert record.input_tokens == len(PROMPT.split()) + 2  # inside the chat template
    assert record.input_token_source is TokenSource.TOKENIZER
    assert record.approximate_counts == ("output_tokens",)
    assert record.output_text is None and record.prompt_text is None  # counted: text dropped
    assert record.finish_reason == "stop"


def test_without_usage_or_tokenizer_the_record_says_so() -> None:
    stub = Replay(writes=(ROLE, content("Paris"), sse(chat_chunk({}, "stop")), DONE))
    record = send_one(stub)

    assert_failed(record, "no token usage", "no tokenizer", kind="malformed")
    assert record.output_tokens == 0
    assert record.output_token_source is None
    assert len(record.chunk_ns) == 1


# --- what goes over the wire -----------------------------------------------------------------


def test_request_payload_and_headers() -> None:
    stub = Replay()
    extra = {"temperature": 0.0, "seed": 42, "ignore_eos": True}
    record = send_one(stub, max_tokens=8, extra_body=extra, api_key="sk-test-123")

    assert record.ok
    [received] = stub.received
    assert received.path == "/v1/chat/completions"
    body = received.body
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 8
    assert body["messages"] == [{"role": "user", "content": PROMPT}]
    assert "prompt" not in body
    for key, value in extra.items():
        assert body[key] == value
    assert received.headers["Authorization"] == "Bearer sk-test-123"
    assert received.headers["Content-Type"] == "application/json"


def test_no_authorization_header_without_api_key() -> None:
    stub = Replay()
    record = send_one(stub)

    assert record.ok
    assert "Authorization" not in stub.received[0].headers


def test_endpoint_repr_hides_the_api_key() -> None:
    endpoint = Endpoint("http://127.0.0.1:8080/v1", MODEL, api_key="sk-secret")
    assert "sk-secret" not in repr(endpoint)
    assert "sk-secret" not in str(endpoint)
    assert MODEL in repr(endpoint)
    assert endpoint.api_key == "sk-secret"


def test_endpoint_url() -> None:
    assert Endpoint("http://h:1/v1/", "m").url == "http://h:1/v1/chat/completions"
    assert Endpoint("http://h:1/v1", "m", api="completions").url == "http://h:1/v1/completions"


def test_build_payload() -> None:
    chat = build_payload(Endpoint("http://h/v1", "m", extra_body={"top_k": 1}), "hi", 16)
    assert chat == {
        "model": "m",
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
        "top_k": 1,
    }
    completions = build_payload(Endpoint("http://h/v1", "m", api="completions"), "hi", 3)
    assert completions == {
        "model": "m",
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
        "prompt": "hi",
    }


# --- failures become the record's error, never an exception ---------------------------------


def test_http_error_status() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            }
        }
    ).encode()
    record = send_one(Replay(writes=(body,), status=400))

    assert_failed(record, "exceeds the available context size", kind="http_4xx")
    assert record.error is not None
    assert record.error.startswith("HTTP 400: ")
    assert record.chunk_ns == ()
    assert record.end_ns >= record.send_ns


def test_error_event_mid_stream() -> None:
    stub = Replay(
        writes=(
            ROLE,
            content("The"),
            sse({"error": {"code": 500, "message": "Failed to decode the batch", "type": "x"}}),
        )
    )
    record = send_one(stub)

    assert_failed(record, "server error in stream", "Failed to decode the batch", kind="in_band")


def test_malformed_json_line_is_an_error_not_an_exception() -> None:
    stub = Replay(
        writes=(
            ROLE,
            content("The"),
            b'data: {"choices":[{"delta":{"content":" capi\n\n',
            content(" of"),
            FINISH,
            USAGE,
            DONE,
        )
    )
    record = send_one(stub)

    assert_failed(record, "malformed stream chunk", kind="malformed")


def test_stream_ending_inside_a_utf8_character_is_an_error_not_an_exception() -> None:
    # "你" is three bytes; the server closes the stream after the first of them.
    cut = 'data: {"choices":[{"delta":{"content":"你"}}]}'.encode()[:-7]
    record = send_one(Replay(writes=(ROLE, content("The"), cut)))

    assert_failed(record, "stream ended inside a UTF-8 character", kind="truncated")


def test_stream_without_done_or_finish_reason() -> None:
    record = send_one(Replay(writes=(ROLE, content("The"), content(" capital"))))

    assert_failed(record, "stream ended before the server finished", kind="truncated")
    assert len(record.chunk_ns) == 2


async def _drop_mid_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(ROLE + content("The"))
    await asyncio.sleep(DELAY_S)
    assert request.transport is not None
    request.transport.close()
    return response


def test_connection_dropped_mid_stream() -> None:
    record = send_one(_drop_mid_stream)

    assert not record.ok
    assert record.error is not None


@pytest.mark.parametrize("reuse_connections", [True, False])
def test_nothing_listening_is_an_error_record(reuse_connections: bool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the request: nothing listens

    async def use() -> RequestRecord:
        endpoint = Endpoint(
            f"http://127.0.0.1:{port}/v1", MODEL, reuse_connections=reuse_connections
        )
        async with StreamingClient(endpoint, max_tokens=8, timeout_s=5.0) as client:
            return await client.send(1, PROMPT)

    record = asyncio.run(use())

    assert_failed(record, "ConnectError: Cannot connect", kind="connection")
    assert record.chunk_ns == ()


def test_timeout_is_an_error_record() -> None:
    stub = Replay(writes=(ROLE, content("The"), FINISH, DONE), delay_s=5.0)
    started = time.monotonic()
    record = send_one(stub, timeout_s=0.3)
    elapsed = time.monotonic() - started

    assert_failed(record, "no complete answer within 0.3 s", kind="timeout")
    assert elapsed < 2.0


def test_client_outside_async_with() -> None:
    client = StreamingClient(Endpoint("http://127.0.0.1:1/v1", MODEL), max_tokens=1)
    with pytest.raises(RuntimeError, match="outside 'async with'"):
        asyncio.run(client.exchange("http://127.0.0.1:1/v1/completions", b"{}",
                                    lambda raw, now_ns: None, lambda: False))


# --- connections and concurrency -------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection_close", "reuse_connections"),
    [(True, False), (False, False), (False, True)],
    ids=["connection-close-header", "silent-close", "silent-close-pooled"],
)
def test_server_closing_every_connection(connection_close: bool, reuse_connections: bool) -> None:
    # llama.cpp's habit: close after each streamed answer, said (header) or unsaid.
    stub = Replay(delay_s=0.001, connection_close=connection_close, drop_after=not connection_close)

    async def use(base_url: str) -> list[RequestRecord]:
        endpoint = Endpoint(base_url, MODEL, reuse_connections=reuse_connections)
        async with StreamingClient(endpoint, max_tokens=8, timeout_s=5.0) as client:
            return [await client.send(i, PROMPT) for i in range(10)]

    records = with_stub(stub, use)

    assert [r.error for r in records] == [None] * 10
    assert all(r.ok for r in records)
    assert [r.request_id for r in records] == list(range(10))
    assert len(stub.received) == 10
    assert len({r.peer for r in stub.received}) == 10  # a new connection for every request


def test_concurrent_requests_are_not_serialised() -> None:
    expected = 4
    arrived: list[int] = []
    all_arrived = asyncio.Event()
    replay = Replay(delay_s=0.001)

    async def handler(request: web.Request) -> web.StreamResponse:
        arrived.append(1)
        if len(arrived) == expected:
            all_arrived.set()
        try:
            # Nobody answers until every request is in: a client that waited for one answer
            # before sending the next would never get there.
            await asyncio.wait_for(all_arrived.wait(), timeout=2.0)
        except TimeoutError:
            return web.Response(status=503, text="only some requests arrived")
        return await replay(request)

    async def use(base_url: str) -> list[RequestRecord]:
        async with StreamingClient(Endpoint(base_url, MODEL), max_tokens=8) as client:
            return await asyncio.gather(*(client.send(i, PROMPT) for i in range(expected)))

    records = with_stub(handler, use)

    assert [r.error for r in records] == [None] * expected
    assert all(r.ok for r in records)
    assert sorted(r.request_id for r in records) == list(range(expected))
    # Every request was sent before any of them got its first token.
    assert max(r.send_ns for r in records) < min(r.chunk_ns[0] for r in records)


# --- forced lengths follow the request's own max_tokens --------------------------------------


def test_forced_length_fields_follow_each_requests_max_tokens(tmp_path: Any) -> None:
    from pytest_llmperf.engines.lmdeploy import LMDeployBackend
    from pytest_llmperf.engines.vllm import VLLMBackend
    from pytest_llmperf.settings.resolve import resolve_settings

    settings = resolve_settings({}, {}, {}, tmp_path)  # --llmperf-max-tokens 64, ignore_eos on
    for backend, field_name in ((VLLMBackend(), "min_tokens"),
                                (LMDeployBackend(), "min_new_tokens")):
        stub = Replay()
        endpoint = backend.endpoint(settings.server, "http://placeholder/v1", MODEL)
        send_one(stub, max_tokens=16, **{name: getattr(endpoint, name) for name in
                                          ("ignore_eos", "min_tokens_field")})
        [received] = stub.received
        # vLLM answers max_tokens 16 with min_tokens 64 with HTTP 400: every request failed.
        assert (received.body["max_tokens"], received.body[field_name]) == (16, 16)
        assert received.body["ignore_eos"] is True


def test_no_forced_length_fields_without_ignore_eos() -> None:
    payload = build_payload(Endpoint("http://h/v1", "m", min_tokens_field="min_tokens"), "hi", 5)
    assert "min_tokens" not in payload and "ignore_eos" not in payload


# --- a closed pooled connection is sent again; a real failure is not hidden -------------------


class DropsAfterReading:
    """Reads each request, then closes the connection without a byte of answer, as a server
    that accepted the request and died (or dropped it) would; answers the first ``good``."""

    def __init__(self, good: int) -> None:
        self.good = good
        self.received = 0
        self.replay = Replay(delay_s=0.001)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.received += 1
        if self.received <= self.good:
            return await self.replay(request)
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response()  # never written: the connection is gone


def test_a_request_the_server_dropped_on_a_fresh_connection_is_not_sent_again() -> None:
    stub = DropsAfterReading(good=0)
    record = send_one(stub)
    assert_failed(record, "ServerDisconnected", kind="connection")
    assert stub.received == 1  # no second copy reached the server


def test_a_request_the_server_dropped_on_a_pooled_connection_fails_with_its_first_send_time(
) -> None:
    # The first answer leaves a kept-alive connection in the pool; the server then takes the
    # second request and drops it, and the resend on a fresh connection is dropped too.
    stub = DropsAfterReading(good=1)

    async def use(base_url: str) -> tuple[RequestRecord, int]:
        async with StreamingClient(Endpoint(base_url, MODEL), max_tokens=8,
                                   timeout_s=5.0) as client:
            assert (await client.send(0, PROMPT)).ok
            before_ns = time.perf_counter_ns()
            return await client.send(1, PROMPT), before_ns

    record, before_ns = with_stub(stub, use)
    assert_failed(record, "on a pooled connection", "sent again on a fresh connection",
                  kind="connection")
    assert stub.received == 3
    assert 0 <= record.send_ns - before_ns < 5_000_000  # the first send, not the resend


def test_a_pooled_connection_closed_while_idle_costs_nothing_and_ends_reuse() -> None:
    # silent close after every answer (llama.cpp): the client mostly sees the close before its
    # next request (it yields once after each answer); where it does not, the first reuse
    # proves it, and there are no more.
    stub = Replay(delay_s=0.001, drop_after=True)

    async def use(base_url: str) -> tuple[list[RequestRecord], int, bool]:
        async with StreamingClient(Endpoint(base_url, MODEL), max_tokens=8,
                                   timeout_s=5.0) as client:
            records = [await client.send(i, PROMPT) for i in range(6)]
            return records, client.resends, client.reuse_connections

    records, resends, reusing = with_stub(stub, use)
    assert [r.error for r in records] == [None] * 6
    assert len(stub.received) == 6  # each request reached the server once
    assert resends <= 1 and sum(r.resent for r in records) == resends  # and says so
    assert not (resends and reusing)

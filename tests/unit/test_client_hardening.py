"""Whatever a server sends, one request fails with a category and the others go on.

Odd answers from raw TCP servers that write exact bytes (tests/unit/test_transport.py's): valid
JSON of an unexpected shape, an answer in the same read as its head, compressed bodies the
client never asked for, 1xx interim answers, bytes after the answer, a 200 that is no event
stream, invalid UTF-8, redirects, and a server that aborts answers and sends no usage.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import pytest

from pytest_llmperf.clients.http import transport_kind
from pytest_llmperf.clients.openai import Endpoint, StreamingClient
from pytest_llmperf.clients.transport import (
    BadResponse,
    Origin,
    TransportError,
    connect,
    request_head,
)
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.results.errors import ErrorKind, http_kind
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.records import RequestRecord
from tests.unit.test_transport import (
    Handler,
    Served,
    body,
    chunk,
    exchange,
    read_request,
    writes,
)

GOOD = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
FINISH = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
USAGE = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}


def sse(*events: Any) -> bytes:
    """Events as a server writes them; a str is sent as it is ("[DONE]"), bytes too."""
    return b"".join(b"data: " + (e if isinstance(e, bytes) else e.encode() if isinstance(e, str)
                                 else json.dumps(e).encode()) + b"\n\n" for e in events)


def answer(events: bytes, *, head: bytes = b"Content-Type: text/event-stream\r\n") -> bytes:
    """A whole 200 answer with a length: head and body in one write, so in one read."""
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head, len(events), events)


def streamed(*events: Any) -> tuple[bytes, ...]:
    """A chunked 200 answer, its head and each event a write of its own."""
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            *(chunk(sse(e)) for e in events), b"0\r\n\r\n")


async def _send_all(handler: Handler, count: int) -> list[RequestRecord]:
    async with Served(handler) as served:
        base = served.url.rsplit("/", 1)[0]
        async with StreamingClient(Endpoint(base, "m"), max_tokens=2, timeout_s=10) as client:
            return list(await asyncio.gather(*(client.send(i, f"hi {i}") for i in range(count))))


def send(handler: Handler, count: int = 1) -> list[RequestRecord]:
    """What the runner makes of each answer: no tokenizer, then the completeness rule."""
    records = count_missing_tokens(asyncio.run(_send_all(handler, count)), None)
    return [judge(record, None) for record in records]


def by_prompt(first: tuple[bytes, ...], others: tuple[bytes, ...]) -> Handler:
    """Answers request 0 (its prompt says so) with ``first``, every other with ``others``,
    each write a read of its own."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        for piece in first if b'"hi 0"' in request else others:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.close()
    return handle


def failed(record: RequestRecord, kind: str, *fragments: str) -> None:
    assert (record.error_kind, record.ok) == (kind, False), (record.error_kind, record.error)
    for fragment in fragments:
        assert fragment in (record.error or ""), record.error


# --- defect 1: valid JSON of an unexpected shape ----------------------------------------------

ODD_CHUNKS = [
    {"choices": [{"delta": "x"}]},
    {"choices": 5},
    {"choices": [5]},
    {"choices": [{"delta": {"content": 5}}]},
    {"choices": [{"delta": {"content": [{"type": "image_url"}]}}]},
    {"choices": [{"delta": {"reasoning_content": {"a": 1}}}]},
    {"choices": [{"text": ["a"]}]},
    {"choices": [{"delta": {}, "finish_reason": 5}]},
    {"timings": [1, 2]},
    {"usage": {"completion_tokens": -3, "prompt_tokens": 1}},
]


@pytest.mark.parametrize("odd", ODD_CHUNKS, ids=json.dumps)
def test_valid_json_of_an_unexpected_shape_fails_its_request_only(odd: Any) -> None:
    bad, good = streamed(GOOD, odd, FINISH, USAGE, "[DONE]"), streamed(GOOD, FINISH, USAGE)
    first, second = send(by_prompt(bad, good), count=2)
    failed(first, "malformed", json.dumps(odd)[:30])  # the chunk, for whoever reads why
    assert second.ok, second


@pytest.mark.parametrize("odd", ODD_CHUNKS[:4], ids=json.dumps)
def test_an_odd_chunk_in_the_same_read_as_the_head_keeps_its_category(odd: Any) -> None:
    [record] = send(writes(answer(sse(GOOD, odd, FINISH, USAGE, "[DONE]"))))
    failed(record, "malformed", "unexpected stream chunk", json.dumps(odd)[:30])


def test_content_as_a_list_of_text_parts_is_read_as_text() -> None:
    parts = {"choices": [{"delta": {"content": [{"type": "text", "text": "Hi"},
                                                {"type": "text", "text": " there"}]}}]}
    [record] = send(writes(*streamed(parts, FINISH, USAGE, "[DONE]")))
    assert record.ok and record.output_tokens == 2, record


def test_a_reader_that_fails_on_a_read_that_came_with_the_whole_answer_is_raised() -> None:
    async def run() -> None:
        async with Served(writes(answer(b"x"), close=False)) as served:
            connection = await connect(served.origin)
            try:
                await connection.send(request_head(served.origin, 0, {}, keep_alive=False), b"")

                def reader(raw: bytes, now_ns: int) -> None:
                    raise ValueError(f"cannot read {raw!r}")
                await connection.stream(reader)
            finally:
                connection.close()
    with pytest.raises(ValueError, match="cannot read b'x'"):
        asyncio.run(run())


# --- defect 1: compressed bodies -----------------------------------------------------------


def compressed(encoding: bytes, packed: bytes) -> Handler:
    return writes(b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s"
                  % (encoding, len(packed), packed))


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize("packed", [zlib.compress(b"data: 1\n\n"), raw_deflate(b"data: 1\n\n")],
                         ids=["zlib", "raw"])
def test_deflate_is_read_wrapped_or_raw(packed: bytes) -> None:
    status, reads = asyncio.run(exchange(compressed(b"deflate", packed)))
    assert (status, body(reads)) == (200, b"data: 1\n\n")


@pytest.mark.parametrize(("encoding", "packed"), [
    (b"gzip", b"\x1f\x8b\x08\x00garbage-not-gzip"),
    (b"deflate", b"\xff\xfe\xfd not deflate at all"),
    (b"gzip", gzip.compress(sse(GOOD, FINISH, USAGE, "[DONE]"))[:-12]),  # ends inside
], ids=["gzip", "deflate", "cut-short"])
def test_a_body_that_does_not_decode_is_malformed_not_a_crash(encoding: bytes,
                                                              packed: bytes) -> None:
    with pytest.raises(TransportError) as raised:
        asyncio.run(exchange(compressed(encoding, packed)))
    assert transport_kind(raised.value, answered=True) is ErrorKind.MALFORMED
    [record] = send(compressed(encoding, packed))
    failed(record, "malformed", "decode")


# --- defect 12: answers that are not the answer -----------------------------------------------


def test_an_early_hints_answer_is_not_the_answer() -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    status, reads = asyncio.run(exchange(writes(hints, answer(b"data: 1\n\n"), pause_s=0.01)))
    assert (status, body(reads)) == (200, b"data: 1\n\n")
    [record] = send(writes(hints + b"HTTP/1.1 100 Continue\r\n\r\n"
                           + answer(sse(GOOD, FINISH, USAGE, "[DONE]"))))
    assert record.ok, record


def test_switching_protocols_is_not_an_answer() -> None:
    with pytest.raises(BadResponse, match="101"):
        asyncio.run(exchange(writes(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                                    b"Connection: Upgrade\r\n\r\nPRI * HTTP/2.0")))


@pytest.mark.parametrize("after", [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra",
                                   b"garbage that is no answer"], ids=["answer", "garbage"])
@pytest.mark.parametrize("apart", [False, True], ids=["same-read", "later-read"])
def test_bytes_after_the_answer_do_not_reach_its_reader(after: bytes, apart: bool) -> None:
    wire = (answer(b"okay"), after) if apart else (answer(b"okay") + after,)

    async def run() -> tuple[list[bytes], bool]:
        reads: list[bytes] = []
        async with Served(writes(*wire, pause_s=0.02, close=False)) as served:
            connection = await connect(served.origin)
            try:
                await connection.send(request_head(served.origin, 0, {}, keep_alive=True), b"")
                await connection.stream(lambda raw, now_ns: reads.append(raw))
                for _ in range(500):  # until the bytes after the answer have come (5 s at most)
                    if connection.closed:
                        break
                    await asyncio.sleep(0.01)
                return reads, connection.keep_alive
            finally:
                connection.close()
    reads, keep_alive = asyncio.run(run())
    assert b"".join(reads) == b"okay"
    assert not keep_alive  # a connection with unasked-for bytes on it carries nothing more


@pytest.mark.parametrize(("head", "wire", "fragment"), [
    (b"Content-Type: application/json\r\n",
     b'{"error": {"message": "model is loading"}}', "model is loading"),
    (b"Content-Type: text/html\r\n", b"<html><body>502 Bad Gateway</body></html>",
     "502 Bad Gateway"),
], ids=["json", "html"])
def test_a_200_that_is_no_event_stream_is_malformed(head: bytes, wire: bytes,
                                                    fragment: str) -> None:
    [record] = send(writes(answer(wire, head=head)))
    failed(record, "malformed", "not an event stream", fragment)


def test_invalid_utf8_inside_the_stream_is_malformed() -> None:
    bad = b'{"choices":[{"delta":{"content":"\xff\xfe"}}]}'
    [record] = send(writes(*streamed(GOOD)[:-1], chunk(sse(bad)),
                           *streamed(FINISH, "[DONE]")[1:]))
    failed(record, "malformed", "UTF-8")
    [record] = send(writes(answer(sse(GOOD) + b"data: \xff")))  # at the very end
    failed(record, "malformed", "UTF-8")


def test_a_redirect_is_its_own_kind_and_names_where_without_credentials() -> None:
    to = b"https://user:pw-in-location@other.example:8443/v1/chat/completions?key=sek-in-q"
    [record] = send(writes(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %s\r\n"
                           b"Content-Length: 0\r\n\r\n" % to))
    failed(record, "redirected", "HTTP 307", "https://other.example:8443/v1/chat/completions",
           "--base-url")
    assert "pw-in-location" not in (record.error or "") and "sek-in-q" not in (record.error or "")


@pytest.mark.parametrize(("status", "kind"), [
    (301, "redirected"), (308, "redirected"), (204, "malformed"), (299, "malformed"),
    (600, "malformed"), (404, "http_4xx"), (429, "rate_limited"), (503, "http_5xx")])
def test_each_status_has_an_honest_kind(status: int, kind: str) -> None:
    assert http_kind(status).value == kind


def test_an_answer_the_server_aborted_without_usage_is_aborted_not_uncountable() -> None:
    aborted = {"choices": [{"index": 0, "delta": {}, "finish_reason": "abort"}]}
    [record] = send(writes(*streamed(GOOD, aborted, "[DONE]")))
    failed(record, "aborted", "the server aborted the answer", "'abort'")


def test_an_aborted_answer_with_no_token_is_aborted_first() -> None:
    aborted = {"choices": [{"index": 0, "delta": {}, "finish_reason": "abort"}]}
    [record] = send(writes(*streamed(aborted, "[DONE]")))
    failed(record, "aborted", "the server aborted the answer")


def test_a_request_is_read_before_any_answer() -> None:
    """The scripted servers above read the request first: a sanity check of the helpers."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        writer.write(answer(sse(GOOD, FINISH, USAGE, "[DONE]")))
        assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        await writer.drain()
        writer.close()
    [record] = send(handle)
    assert record.ok, record


# --- what the client itself is given: a request head carries only what HTTP allows ----------


def test_a_path_with_any_characters_is_sent_percent_encoded() -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(answer(sse(GOOD, FINISH, USAGE, "[DONE]")))
        await writer.drain()
        writer.close()

    async def run() -> RequestRecord:
        async with Served(handle) as served:
            base = served.url.rsplit("/", 1)[0] + "/模型 x"
            async with StreamingClient(Endpoint(base, "m"), max_tokens=2, timeout_s=5) as client:
                return await client.send(0, "hi")
    record = asyncio.run(run())
    assert record.ok, record.error
    assert seen[0].startswith(b"POST /v1/%E6%A8%A1%E5%9E%8B%20x/chat/completions HTTP/1.1\r\n")


def test_an_international_host_is_sent_as_punycode() -> None:
    origin = Origin.parse("https://пример.рф:8443/v1/chat/completions")
    assert origin.host == "xn--e1afmkfd.xn--p1ai"
    assert request_head(origin, 2, {}, keep_alive=True).startswith(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: xn--e1afmkfd.xn--p1ai:8443\r\n")


def test_a_url_the_client_refuses_is_shown_without_its_credentials() -> None:
    with pytest.raises(ValueError, match="not an http") as refused:
        Origin.parse("ftp://user:pw-in-url@host/v1")
    assert "pw-in-url" not in str(refused.value)


@pytest.mark.parametrize("key", ["sk-key-with-a-newline\n", "sk-key\r\nX-Injected: 1",
                                 "sk-ключ", "sk-key\x00"], ids=["lf", "crlf", "cyrillic", "nul"])
def test_an_api_key_no_header_can_carry_is_refused_before_any_request(key: str) -> None:
    with pytest.raises(ValueError, match="no HTTP header can carry it") as refused:
        StreamingClient(Endpoint("http://127.0.0.1:9/v1", "m", api_key=key), max_tokens=2)
    assert "sk-" not in str(refused.value)

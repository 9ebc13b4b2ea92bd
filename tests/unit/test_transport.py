"""The streaming clients' HTTP/1.1 connections (clients/transport.py) against raw TCP servers
that write exact bytes: framing split across reads, bodies without a length, compression,
answers that are not HTTP, connections cut inside an answer."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_llmperf.clients.http import HttpClient, transport_kind
from pytest_llmperf.clients.transport import (
    BadResponse,
    ConnectError,
    Connection,
    Origin,
    PayloadError,
    ServerDisconnected,
    TransportError,
    connect,
    request_head,
)
from pytest_llmperf.results.errors import ErrorKind
from tests.fakes.tls import self_signed_certificate

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


def writes(*pieces: bytes, pause_s: float = 0.0, close: bool = True) -> Handler:
    """A server that reads one request, then writes ``pieces`` one by one (``pause_s`` apart,
    so that each is a read of its own) and closes."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            if pause_s:
                await asyncio.sleep(pause_s)
        if not close:  # until the client closes
            await reader.read()
        writer.close()
        await writer.wait_closed()
    return handle


class Served:
    """A raw server for one test: ``async with`` it; on the way out its handlers are let
    finish (a handler cancelled mid-write would be an error of the test, not of the client)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._handling: list[asyncio.Task[None]] = []
        self.origin = Origin("http", "127.0.0.1", 0, "/v1/completions")
        self.url = ""

    async def __aenter__(self) -> Served:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._handling.append(task)
            await self._handler(reader, writer)

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self._tls)
        port = self._server.sockets[0].getsockname()[1]
        scheme = "https" if self._tls else "http"
        self.url = f"{scheme}://127.0.0.1:{port}/v1/completions"
        self.origin = Origin.parse(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.wait_for(asyncio.gather(*self._handling, return_exceptions=True), 5)
        self._server.close()
        await self._server.wait_closed()


async def exchange(handler: Handler) -> tuple[int, list[tuple[bytes, int]]]:
    """One request on a fresh connection: the status and the body's reads with their stamps."""
    reads: list[tuple[bytes, int]] = []
    async with Served(handler) as served:
        origin = served.origin
        connection = await connect(origin)
        try:
            status = await connection.send(request_head(origin, 2, {}, keep_alive=False), b"{}")
            await connection.stream(lambda raw, now_ns: reads.append((raw, now_ns)))
        finally:
            connection.close()
    return status, reads


def body(reads: Sequence[tuple[bytes, int]]) -> bytes:
    return b"".join(raw for raw, _ in reads)


# --- framing -------------------------------------------------------------------------------


def test_chunked_answer_split_anywhere_reads_whole() -> None:
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(5)]
    wire = CHUNKED_HEAD + b"".join(chunk(e) for e in events) + b"0\r\n\r\n"
    pieces = [wire[i:i + 7] for i in range(0, len(wire), 7)]  # heads and chunks cut mid-way
    status, reads = asyncio.run(exchange(writes(*pieces, pause_s=0.002)))
    assert status == 200
    assert body(reads) == b"".join(events)
    stamps = [now_ns for _, now_ns in reads]
    assert stamps == sorted(stamps) and len(set(stamps)) > 1  # each read at its own time


def test_the_same_on_uvloop() -> None:
    """uvloop's transports are not asyncio.Transport's subclasses; they carry answers the same."""
    uvloop = pytest.importorskip("uvloop")
    wire = CHUNKED_HEAD + chunk(b"data: 1\n\n") + chunk(b"data: 2\n\n") + b"0\r\n\r\n"
    got: list[tuple[int, list[tuple[bytes, int]]]] = []

    def run() -> None:
        got.append(uvloop.run(exchange(writes(wire[:60], wire[60:], pause_s=0.01))))

    # In a thread of its own: a transport that breaks under uvloop can leave the loop unable
    # to finish, and the test must fail, not hang.
    running = threading.Thread(target=run, daemon=True)
    running.start()
    running.join(15)
    assert not running.is_alive(), "the exchange on uvloop did not end within 15 s"
    status, reads = got[0]
    assert (status, body(reads)) == (200, b"data: 1\n\ndata: 2\n\n")


def test_each_read_is_stamped_when_it_arrived_not_when_it_was_handed_on() -> None:
    before = time.perf_counter_ns()
    status, reads = asyncio.run(exchange(writes(
        CHUNKED_HEAD + chunk(b"first"), chunk(b"second"), b"0\r\n\r\n", pause_s=0.05)))
    assert status == 200 and body(reads) == b"firstsecond"
    first, second = reads[0][1], reads[1][1]
    assert before < first and second - first >= 40_000_000  # 50 ms apart, as written


def test_the_chunks_of_one_read_reach_the_reader_in_one_call() -> None:
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(4)]
    # Head and two chunks in the first write, two chunks and the end in the second.
    status, reads = asyncio.run(exchange(writes(
        CHUNKED_HEAD + chunk(events[0]) + chunk(events[1]),
        chunk(events[2]) + chunk(events[3]) + b"0\r\n\r\n", pause_s=0.05)))
    assert status == 200
    assert [raw for raw, _ in reads] == [events[0] + events[1], events[2] + events[3]]
    assert reads[1][1] - reads[0][1] >= 40_000_000  # each at its own read's time


def test_content_length_body() -> None:
    status, reads = asyncio.run(exchange(writes(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo", pause_s=0.01, close=False)))
    assert (status, body(reads)) == (200, b"hello")  # complete at its length, not at close


def test_a_body_without_length_ends_with_its_connection() -> None:
    status, reads = asyncio.run(exchange(writes(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: 1\n\n", b"data: 2\n\n",
        pause_s=0.01)))
    assert (status, body(reads)) == (200, b"data: 1\n\ndata: 2\n\n")


def test_gzip_answer_is_decoded() -> None:
    packed = gzip.compress(b"data: [DONE]\n\n")
    status, reads = asyncio.run(exchange(writes(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
        + packed)))
    assert (status, body(reads)) == (200, b"data: [DONE]\n\n")


def test_an_unsupported_encoding_is_a_bad_response() -> None:
    with pytest.raises(BadResponse, match="unsupported Content-Encoding: br"):
        asyncio.run(exchange(writes(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n"
                                    b"Content-Length: 2\r\n\r\nxx")))


# --- what goes wrong -----------------------------------------------------------------------


def test_an_answer_that_is_not_http_is_a_bad_response() -> None:
    with pytest.raises(BadResponse, match="not an HTTP answer"):
        asyncio.run(exchange(writes(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")))


def test_a_connection_cut_inside_a_chunk_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="closed inside the answer"):
        asyncio.run(exchange(writes(CHUNKED_HEAD + b"40\r\ndata: cut")))


def test_a_connection_cut_inside_the_head_is_a_bad_response() -> None:
    with pytest.raises(BadResponse, match="inside the answer's head"):
        asyncio.run(exchange(writes(b"HTTP/1.1 200 OK\r\nContent-Ty")))


def test_a_connection_closed_before_any_byte_is_server_disconnected() -> None:
    with pytest.raises(ServerDisconnected):
        asyncio.run(exchange(writes()))


def test_nothing_listening_is_a_connect_error() -> None:
    async def refused() -> None:
        async with Served(writes()) as served:
            pass
        await connect(served.origin)
    with pytest.raises(ConnectError, match=r"Cannot connect to host 127\.0\.0\.1:\d+ ssl:False"):
        asyncio.run(refused())


@pytest.mark.parametrize("pieces", [(CHUNKED_HEAD + chunk(b"x"),), (CHUNKED_HEAD, chunk(b"x"))],
                         ids=["read-with-the-head", "read-of-its-own"])
def test_an_exception_of_the_reader_ends_the_exchange_and_is_raised(
        pieces: tuple[bytes, ...]) -> None:
    async def run() -> None:
        async with Served(writes(*pieces, pause_s=0.01, close=False)) as served:
            origin = served.origin
            connection = await connect(origin)
            await connection.send(request_head(origin, 0, {}, keep_alive=False), b"")

            def reader(raw: bytes, now_ns: int) -> None:
                raise ValueError(f"cannot read {raw!r}")
            try:
                await connection.stream(reader)
            finally:
                assert connection.closed  # the rest of the answer is of no use
    with pytest.raises(ValueError, match="cannot read b'x'"):
        asyncio.run(run())


@pytest.mark.parametrize(("kind", "answered", "expected"), [
    (PayloadError("cut"), True, ErrorKind.TRUNCATED),
    (PayloadError("cut"), False, ErrorKind.TRUNCATED),
    (BadResponse("not http"), False, ErrorKind.MALFORMED),
    (ServerDisconnected("gone"), False, ErrorKind.CONNECTION),
    (ServerDisconnected("gone"), True, ErrorKind.TRUNCATED),
    (ConnectError("refused"), False, ErrorKind.CONNECTION),
])
def test_transport_failures_have_their_category(kind: TransportError, answered: bool,
                                                expected: ErrorKind) -> None:
    assert transport_kind(kind, answered=answered) is expected


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_end_in_an_answer_or_a_transport_error(wire: bytes, cut: int) -> None:
    """Whatever a server writes, in whatever pieces: a status and a body, or TransportError."""
    pieces = [wire[i:i + cut] for i in range(0, len(wire), cut)]
    with contextlib.suppress(TransportError):
        asyncio.run(exchange(writes(*pieces)))


# --- the client's connections --------------------------------------------------------------


def keep_alive_server(answers: int, connections: list[int]) -> Handler:
    """Answers up to ``answers`` requests per connection with Content-Length bodies, keeping
    the connection open; the next request on it is read and the connection closed without a
    byte, as a server that closed it meanwhile would.  Counts the connections it was opened
    with."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError):
            for _ in range(answers):
                await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nokay")
                await writer.drain()
            await read_request(reader)
        writer.close()
    return handle


def _appending(reads: list[bytes]) -> Callable[[bytes, int], None]:
    return lambda raw, now_ns: reads.append(raw)


def client_exchanges(handler: Handler, times: int) -> tuple[list[bytes], HttpClient]:
    async def run() -> tuple[list[bytes], HttpClient]:
        bodies: list[bytes] = []
        async with Served(handler) as served, HttpClient(timeout_s=5) as client:
            for _ in range(times):
                reads: list[bytes] = []
                sent = await client.exchange(served.url, b"{}", _appending(reads),
                                             lambda: True)
                assert sent.status == 200
                bodies.append(b"".join(reads))
        return bodies, client
    return asyncio.run(run())


def test_a_kept_alive_connection_carries_the_next_request() -> None:
    connections: list[int] = []
    bodies, client = client_exchanges(keep_alive_server(3, connections), times=3)
    assert bodies == [b"okay"] * 3
    assert len(connections) == 1 and client.resends == 0


def test_a_pooled_connection_the_server_closed_is_sent_once_more_on_a_fresh_one() -> None:
    connections: list[int] = []  # each connection answers one request, then drops the next
    bodies, client = client_exchanges(keep_alive_server(1, connections), times=3)
    assert bodies == [b"okay"] * 3
    # 1st on a fresh connection; the 2nd meets it closed and is resent on a fresh one; from
    # then on no reuse, so the 3rd opens its own.
    assert client.resends == 1 and not client.reuse_connections
    assert len(connections) == 3


def test_a_non_200_answer_comes_back_with_its_body() -> None:
    async def run() -> None:
        answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\noverload!"
        async with Served(writes(answer)) as served, HttpClient(timeout_s=5) as client:
            sent = await client.exchange(served.url, b"{}", lambda raw, _: None, lambda: False)
        assert (sent.status, sent.error_body) == (503, b"overload!")
    asyncio.run(run())


def test_a_server_silent_after_the_head_runs_into_the_first_token_limit() -> None:
    async def run() -> None:
        async with Served(writes(CHUNKED_HEAD, close=False)) as served, \
                HttpClient(timeout_s=30, first_token_timeout_s=0.2) as client:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await client.exchange(served.url, b"{}", lambda raw, _: None, lambda: False)
            assert time.monotonic() - started < 2
    asyncio.run(run())


def test_origins() -> None:
    assert Origin.parse("http://h:8000/v1/completions?x=1") == Origin(
        "http", "h", 8000, "/v1/completions?x=1")
    assert Origin.parse("https://api.example.com").host_header == "api.example.com"
    assert Origin.parse("https://api.example.com").port == 443
    assert Origin.parse("http://[::1]:8080/v1").host_header == "[::1]:8080"
    with pytest.raises(ValueError, match="not an http"):
        Origin.parse("ftp://h/v1")


def test_request_head() -> None:
    head = request_head(Origin.parse("http://h:81/v1/chat"), 12, {"Authorization": "Bearer k"},
                        keep_alive=True).decode()
    assert head.startswith("POST /v1/chat HTTP/1.1\r\nHost: h:81\r\n")
    assert "Content-Length: 12\r\n" in head and "Connection: keep-alive\r\n" in head
    assert "Accept-Encoding: identity\r\n" in head and head.endswith("Bearer k\r\n\r\n")


def test_a_connection_carries_one_request_at_a_time() -> None:
    with pytest.raises(RuntimeError, match="no request"):
        asyncio.run(Connection().stream(lambda raw, now_ns: None))


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def https_exchange(certificate: tuple[Path, Path], trusted: bool) -> bytes:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert) if trusted else None)

    async def run() -> bytes:
        reads: list[bytes] = []
        async with Served(writes(CHUNKED_HEAD + chunk(b"data: 1\n\n"), b"0\r\n\r\n",
                                 pause_s=0.01), tls=server_side) as served:
            connection = await connect(served.origin, client_side)
            try:
                await connection.send(request_head(served.origin, 0, {}, keep_alive=False), b"")
                await connection.stream(lambda raw, now_ns: reads.append(raw))
            finally:
                connection.close()
        return b"".join(reads)
    return asyncio.run(run())


def test_an_https_answer_streams_as_over_tcp(certificate: tuple[Path, Path]) -> None:
    assert https_exchange(certificate, trusted=True) == b"data: 1\n\n"


def test_an_untrusted_certificate_is_a_connect_error(certificate: tuple[Path, Path]) -> None:
    with pytest.raises(ConnectError, match="certificate verify failed"):
        https_exchange(certificate, trusted=False)

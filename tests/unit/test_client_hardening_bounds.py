"""What a hostile server can make the client spend is bounded, and what the client's own machine
runs out of is the client's.

- a gzip bomb, an endless head, an endless line cost the client no memory to speak of
  (tracemalloc's peak while the exchange runs), and long lines cost linear time, not quadratic;
- one TLS context per client, not one per connection;
- running out of file descriptors when connecting is ``client_limit``, not ``connection``, and
  marks the window client-bound with the reason;
- token counting after the window stops at its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.clients.http import ResendFailed, transport_kind
from pytest_llmperf.clients.ollama import NDJSONLines, OllamaClient
from pytest_llmperf.clients.openai import Endpoint, StreamingClient
from pytest_llmperf.clients.sse import LineTooLong, SSEParser
from pytest_llmperf.clients.transport import (
    BadResponse,
    ClientLimit,
    ServerDisconnected,
    connect,
    request_head,
)
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.observe.health import judge_health
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.records import RequestRecord
from tests.fakes.tls import self_signed_certificate
from tests.unit.test_client_hardening import FINISH, GOOD, USAGE, answer, send, sse
from tests.unit.test_transport import Handler, Served, exchange, read_request, writes

MIB = 1 << 20


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """The peak of Python's traced allocations inside the block, in bytes (one item)."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
        peak.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


# --- decompression --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """256 MiB of zeros, gzipped to about a quarter of a MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    return b"".join([*(packer.compress(zeros) for _ in range(256)), packer.flush()])


async def _ollama_send(handler: Handler) -> RequestRecord:
    async with Served(handler) as served:
        root = served.url.removesuffix("/v1/completions")
        async with OllamaClient(root, "m", max_tokens=2, timeout_s=30) as client:
            return await client.send(0, "hi")


@pytest.mark.parametrize("client", ["openai", "ollama"])
def test_a_gzip_bomb_costs_the_client_no_memory(gzip_bomb: bytes, client: str) -> None:
    bomb = writes(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                  % len(gzip_bomb), gzip_bomb)
    with peak_memory() as peak:
        [record] = send(bomb) if client == "openai" else [asyncio.run(_ollama_send(bomb))]
    assert record.error_kind == "malformed", record.error
    assert "decompression bomb" in (record.error or "")
    assert peak[0] < 16 * MIB, f"peak {peak[0] / MIB:.0f} MiB"


def test_a_compressed_answer_is_handed_on_in_bounded_pieces() -> None:
    """A well-formed compressed answer whose text inflates a lot (but not like a bomb) still
    reaches the reader whole, piece by piece."""
    events = sse(*[GOOD] * 2000, FINISH, USAGE, "[DONE]")
    packed = zlib.compress(events, 9)
    pieces: list[int] = []

    async def run() -> bytes:
        got: list[bytes] = []
        async with Served(writes(b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(packed), packed))) as s:
            connection = await connect(s.origin)
            await connection.send(request_head(s.origin, 0, {}, keep_alive=False), b"")
            await connection.stream(lambda raw, now_ns: (got.append(raw), pieces.append(len(raw))))
            connection.close()
        return b"".join(got)
    assert asyncio.run(run()) == events
    assert max(pieces) <= 64 * 1024


# --- the head -------------------------------------------------------------------------------


def endless(start: bytes, filler: bytes, *, limit: int = 16 * MIB) -> Handler:
    """Writes ``start``, then ``filler`` again and again, up to ``limit`` bytes or until the
    client hangs up."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(start)
        block = filler * max(1, 65536 // len(filler))
        with contextlib.suppress(ConnectionError):
            for _ in range(limit // len(block)):
                writer.write(block)
                await writer.drain()
        writer.close()
    return handle


@pytest.mark.parametrize(("start", "filler"), [
    (b"HTTP/1.1 200 OK\r\nX-Endless: ", b"a"),
    (b"HTTP/1.1 200 OK\r\n", b"X-Many: headers\r\n"),
    (b"", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"),
], ids=["one-value", "many-headers", "endless-1xx"])
def test_an_endless_head_costs_the_client_no_memory(start: bytes, filler: bytes) -> None:
    with peak_memory() as peak, pytest.raises(BadResponse, match="head"):
        asyncio.run(exchange(endless(start, filler)))
    assert peak[0] < 4 * MIB, f"peak {peak[0] / MIB:.1f} MiB"


# --- long lines -----------------------------------------------------------------------------


def fed(parse: Callable[[bytes], object], data: bytes, piece: int) -> float:
    """CPU seconds to feed ``data`` in pieces of ``piece`` bytes."""
    began = time.process_time()
    for at in range(0, len(data), piece):
        parse(data[at:at + piece])
    return time.process_time() - began


@pytest.mark.parametrize("make", [lambda: SSEParser(max_line=64 * MIB).feed,
                                  lambda: NDJSONLines(max_line=64 * MIB).feed],
                         ids=["sse", "ndjson"])
def test_a_long_line_costs_linear_time(make: Callable[[], Callable[[bytes], object]]) -> None:
    # 4 MiB in 1 KiB reads: growing one buffer read by read copies ~8 GiB (seconds); keeping
    # the reads and joining them once the line ends copies 8 MiB (milliseconds).
    line = b"data: " + b"x" * (4 * MIB) + b"\n\n"
    assert fed(make(), line, 1024) < 1.0


@pytest.mark.parametrize("pieces", [1, 100, 4096])
def test_a_line_longer_than_the_limit_is_refused_however_it_comes(pieces: int) -> None:
    line = b"data: " + b"x" * 5000 + b"\n\n"
    for parser in (SSEParser(max_line=4096), NDJSONLines(max_line=4096)):
        with pytest.raises(LineTooLong, match="4096"):
            fed(parser.feed, line, max(1, len(line) // pieces))
    # An event of many data lines is held to the same limit.
    with pytest.raises(LineTooLong):
        fed(SSEParser(max_line=4096).feed, b"data: xxxxxxxx\n" * 1000 + b"\n", 100)


def test_a_line_too_long_for_the_client_fails_its_request(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from pytest_llmperf.clients import sse as sse_module
    monkeypatch.setattr(sse_module, "MAX_LINE_BYTES", 4096)
    long = {"choices": [{"delta": {"content": "x" * 8000}}]}
    [record] = send(writes(answer(sse(GOOD, long, FINISH, USAGE, "[DONE]"))))
    assert record.error_kind == "malformed" and "longer than" in (record.error or "")
    [ok] = send(writes(answer(sse(GOOD, FINISH, USAGE, "[DONE]"))))
    assert ok.ok, ok.error


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_one_tls_context_per_client(certificate: tuple[Path, Path],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    made: list[int] = []
    original = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(1)
        context = original(*args, **kwargs)
        context.load_verify_locations(cafile=str(cert))  # trusts the test's certificate
        return context
    monkeypatch.setattr(ssl, "create_default_context", counted)

    async def run() -> list[RequestRecord]:
        good = answer(sse(GOOD, FINISH, USAGE, "[DONE]"))
        async with Served(writes(good), tls=server_side) as served:
            base = served.url.rsplit("/", 1)[0]
            target = Endpoint(base, "m", reuse_connections=False)  # a connection per request
            async with StreamingClient(target, max_tokens=2, timeout_s=10) as client:
                return [await client.send(i, "hi") for i in range(3)]
    records = asyncio.run(run())
    assert all(r.ok for r in records), [r.error for r in records]
    assert len(made) == 1


# --- the client's own limits ----------------------------------------------------------------

OUT_OF_FDS = """
import asyncio, json, os, resource
from pytest_llmperf.clients.openai import Endpoint, StreamingClient

async def main():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    base = "http://127.0.0.1:%d/v1" % server.sockets[0].getsockname()[1]
    target = Endpoint(base, "m", reuse_connections=False)
    async with StreamingClient(target, max_tokens=2, timeout_s=5) as client:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        held = []
        try:
            while True:  # every descriptor the soft limit allows
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        record = await client.send(1, "hi")
        for fd in held:
            os.close(fd)
    print(json.dumps([record.error_kind, record.error]))

asyncio.run(main())
"""


def test_out_of_file_descriptors_is_the_clients_limit_not_the_servers() -> None:
    done = subprocess.run([sys.executable, "-c", OUT_OF_FDS], capture_output=True, text=True,
                          timeout=60, check=True)
    kind, error = json.loads(done.stdout)
    assert kind == "client_limit", error
    assert "Too many open files" in error and "client" in error


def test_a_resend_that_runs_out_of_file_descriptors_is_the_clients_limit() -> None:
    failed = ResendFailed(ServerDisconnected("gone"), ClientLimit("EMFILE"), 0)
    assert transport_kind(failed, answered=False) is ErrorKind.CLIENT_LIMIT


def test_a_window_with_client_limit_failures_is_client_bound_with_the_reason() -> None:
    ok = RequestRecord(1, 0, (5,), 10, 1, None)
    out = RequestRecord(2, 0, error="the client ran out of file descriptors",
                        error_kind="client_limit")
    health = judge_health({}, [], records=[ok, out, out])
    assert any("client_limit" in c and "2 of 3" in c for c in health.client_bound), health
    assert judge_health({}, [], records=[ok]).client_bound == ()


# --- token counting after the window ----------------------------------------------------------


def test_token_counting_stops_at_its_deadline() -> None:
    now = [0.0]

    class Slow:
        asked = 0

        def count_text(self, text: str) -> int:
            self.asked += 1
            now[0] += 10.0
            return len(text.split())

        def count_prompt(self, prompt: str) -> int:
            now[0] += 10.0
            return 3

    counter = Slow()
    records = [RequestRecord(i, 0, (1,), 2, finish_reason="length", output_text="a b",
                             prompt_text="p") for i in range(10)]
    counted = count_missing_tokens(records, counter, deadline_s=45.0, clock=lambda: now[0])
    assert [r.output_tokens for r in counted[:3]] == [2, 2, 2]  # begun before 45 s
    assert counter.asked == 3  # nothing asked after the deadline
    for record in counted[3:]:
        assert record.error_kind == "malformed"
        assert "45 s" in (record.error or "") and "deadline" in (record.error or "")
        assert record.output_text is None and record.prompt_text is None
    # Past the deadline as without a tokenizer: a reasoning count alone stays unknown, and
    # costs no request.
    reasoned = RequestRecord(11, 0, (1,), 2, 4, None, finish_reason="length",
                             reasoning_tokens=None, reasoning_text="hmm")
    [late] = count_missing_tokens([reasoned], counter, deadline_s=0.0, clock=lambda: now[0])
    assert late.error is None and late.reasoning_tokens is None and counter.asked == 3

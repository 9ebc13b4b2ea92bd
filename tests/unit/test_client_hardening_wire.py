"""What the best load tools test their transport with, against raw TCP servers that write exact
bytes (tests/unit/test_transport.py's): two answers in one read, a gzip body cut mid-stream,
an answer that drips a byte at a time while the client's event loop stays on time, data after
``data: [DONE]``, and certificates for the wrong host or out of date.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.clients.http import HttpClient, transport_kind
from pytest_llmperf.clients.ollama import OllamaClient
from pytest_llmperf.clients.openai import Endpoint, StreamingClient
from pytest_llmperf.clients.sse import SSEParser
from pytest_llmperf.clients.transport import PayloadError, connect, request_head
from pytest_llmperf.observe.health import HealthWatch
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.records import RequestRecord
from tests.unit.test_client_hardening import (
    FINISH,
    GOOD,
    USAGE,
    answer,
    chunk,
    failed,
    send,
    sse,
)
from tests.unit.test_ollama import chunk as ollama_chunk
from tests.unit.test_ollama import final as ollama_final
from tests.unit.test_transport import Handler, Served, read_request, writes

WHOLE = sse(GOOD, FINISH, USAGE, "[DONE]")

# --- two answers in one read ------------------------------------------------------------------


def pipelining(first: bytes, extra: bytes, later: bytes) -> Handler:
    """Answers the server's first request with ``first`` and ``extra`` in one write (so in one
    read), every later request (on that connection or another) with ``later``."""
    answered: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                writer.write(first + extra if not answered else later)
                answered.append(1)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        writer.close()
    return handle


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_answer_nobody_asked_for_is_not_the_next_requests(framing: str) -> None:
    def framed(text: bytes) -> bytes:
        if framing == "length":
            return answer(text)
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunk(text) + b"0\r\n\r\n")

    async def run() -> list[bytes]:
        bodies = []
        handler = pipelining(framed(b"first"), framed(b"extra"), framed(b"later"))
        async with Served(handler) as served, HttpClient(timeout_s=5) as client:
            for _ in range(3):
                reads: list[bytes] = []
                sent = await client.exchange(served.url, b"{}",
                                             lambda raw, _, into=reads: into.append(raw),
                                             lambda: True)
                assert sent.status == 200
                bodies.append(b"".join(reads))
        return bodies
    assert asyncio.run(run()) == [b"first", b"later", b"later"]


def test_a_second_answer_in_the_first_ones_read_is_not_a_records() -> None:
    extra = answer(sse({"choices": [{"index": 0, "delta": {"content": "EXTRA"}}]}, FINISH,
                       {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 99}},
                       "[DONE]"))

    async def run() -> list[RequestRecord]:
        async with Served(pipelining(answer(WHOLE), extra, answer(WHOLE))) as served:
            base = served.url.rsplit("/", 1)[0]
            async with StreamingClient(Endpoint(base, "m"), max_tokens=2, timeout_s=5) as client:
                return [await client.send(i, "hi") for i in range(2)]
    records = asyncio.run(run())
    assert [(r.ok, r.output_tokens) for r in records] == [(True, 2), (True, 2)], records


# --- a gzip body cut mid-stream -----------------------------------------------------------------

PACKED = gzip.compress(sse(GOOD, GOOD, GOOD, FINISH, USAGE, "[DONE]"))
GZIP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"


def flushed(*events: Any) -> bytes:
    """A gzip stream flushed after each event, as a server's gzip middleware writes an answer,
    cut before its end: what a server that died mid-answer sent."""
    packer = zlib.compressobj(wbits=31)
    return b"".join(packer.compress(sse(e)) + packer.flush(zlib.Z_SYNC_FLUSH) for e in events)


CUT = flushed(GOOD, GOOD)


@pytest.mark.parametrize("wire", [
    (GZIP_HEAD + b"Content-Length: %d\r\n\r\n" % len(PACKED) + PACKED[:len(PACKED) // 2],),
    (GZIP_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", chunk(PACKED[:len(PACKED) // 2])),
    (GZIP_HEAD + b"Connection: close\r\n\r\n", CUT),
    (GZIP_HEAD + b"Connection: close\r\n\r\n" + CUT,),
    (GZIP_HEAD + b"Connection: close\r\n\r\n" + CUT[:-3],),
], ids=["length", "chunked", "until-close", "until-close-with-the-head", "inside-a-block"])
def test_a_gzip_body_cut_mid_stream_is_truncated(wire: tuple[bytes, ...]) -> None:
    [record] = send(writes(*wire, pause_s=0.02))
    failed(record, "truncated")


def test_a_gzip_body_cut_mid_stream_keeps_the_tokens_read_before_the_cut() -> None:
    [record] = send(writes(GZIP_HEAD + b"Connection: close\r\n\r\n", CUT, pause_s=0.02))
    failed(record, "truncated")
    assert len(record.chunk_ns) >= 1  # "Hi" twice, in one read or two


def test_a_gzip_body_cut_before_its_reader_came_is_truncated_too() -> None:
    """The head, the cut body and the close all came before the reader was attached (a busy
    loop runs the request's task late): still a stream that was cut, not one that is broken."""
    async def run() -> list[bytes]:
        got: list[bytes] = []
        async with Served(writes(GZIP_HEAD + b"Connection: close\r\n\r\n" + CUT)) as served:
            connection = await connect(served.origin)
            await connection.send(request_head(served.origin, 0, {}, keep_alive=False), b"")
            for _ in range(500):  # until the close has come (5 s at most)
                if connection.closed:
                    break
                await asyncio.sleep(0.01)
            try:
                await connection.stream(lambda raw, now_ns: got.append(raw))
            finally:
                connection.close()
        return got
    with pytest.raises(PayloadError, match=r"not completed.*ends before its end") as raised:
        asyncio.run(run())
    assert transport_kind(raised.value, answered=True) is ErrorKind.TRUNCATED


# --- slow drips -----------------------------------------------------------------------------


def dripping(wire: bytes, every_s: float) -> Handler:
    """Writes ``wire`` one byte at a time, ``every_s`` apart."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(len(wire)):
            writer.write(wire[i:i + 1])
            await asyncio.sleep(every_s)
        writer.close()
    return handle


def test_answers_that_drip_a_byte_at_a_time_leave_the_event_loop_on_time() -> None:
    """Eight answers, each a byte every 2 ms for about a second and a half, head included: the
    client reads every byte as it comes, and its loop lag (HealthWatch's) stays low."""
    wire = answer(sse(*[GOOD] * 6, FINISH, USAGE, "[DONE]"))
    watch = HealthWatch(None, in_process=False)

    async def run() -> list[RequestRecord]:
        lag = asyncio.create_task(watch.lag_probe())
        try:
            async with Served(dripping(wire, 0.002)) as served:
                base = served.url.rsplit("/", 1)[0]
                async with StreamingClient(Endpoint(base, "m"), max_tokens=2,
                                           timeout_s=60) as client:
                    watch.window_started()
                    records = await asyncio.gather(*(client.send(i, "hi") for i in range(8)))
                    watch.window_ended()
                    return list(records)
        finally:
            lag.cancel()
    records = asyncio.run(run())
    assert all(r.ok for r in records), [r.error for r in records]
    assert all(len(r.chunk_ns) == 6 for r in records)  # each token read when its byte came
    # Generous: the limit a window is marked client-bound at is 25 ms (observe.health); a
    # client that worked per byte on all it had read (quadratic) would be far past it.
    assert len(watch.lags_ms) > 50
    assert watch.figures["loop_lag_ms_p99"] < 50, watch.figures


# --- data after data: [DONE] ---------------------------------------------------------------


@pytest.mark.parametrize("after", [
    sse(GOOD, GOOD),
    sse({"error": {"message": "late"}}),
    b"data: not json\n\n",
    b"data: \xff\xfe\n\n",
    b"data: {\"choices\": 5}\n\n",
], ids=["tokens", "error", "not-json", "not-utf8", "odd-shape"])
@pytest.mark.parametrize("apart", [False, True], ids=["same-read", "later-read"])
@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
def test_data_after_done_is_ignored(after: bytes, apart: bool, usage: bool) -> None:
    events = sse(GOOD, FINISH, *([USAGE] if usage else []), "[DONE]")
    wire = (answer(events + after),) if not apart else (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n", chunk(events), chunk(after), b"0\r\n\r\n")

    async def run() -> RequestRecord:
        async with Served(writes(*wire, pause_s=0.02)) as served:
            base = served.url.rsplit("/", 1)[0]
            async with StreamingClient(Endpoint(base, "m"), max_tokens=2, timeout_s=5) as client:
                return await client.send(0, "hi")
    record = asyncio.run(run())
    assert (record.error, record.finish_reason) == (None, "length")
    assert len(record.chunk_ns) == 1  # the one read that carried "Hi"
    if usage:
        assert record.output_tokens == 2 and record.ok
    else:  # kept for the tokenizer: only what came before [DONE]
        assert record.output_text == "Hi"


def test_an_event_stream_parser_reads_nothing_after_its_last_event() -> None:
    parser = SSEParser(max_line=64, last="[DONE]")
    wire = b"data: 1\n\ndata: [DONE]\n\ndata: \xff\n\n" + b"x" * 100  # bad, then too long
    assert [e.data for e in parser.feed(wire)] == ["1", "[DONE]"]
    assert parser.ended and parser.feed(b"y" * 100 + b"\n\n") == [] and parser.close() == []


@pytest.mark.parametrize("after", [
    ollama_chunk("more") + ollama_final(),
    b'{"error": "late"}\n',
    b"not json\n",
    b"\xff\xfe\n",
    b'{"message": {"content": "cut',  # no newline: the stream's end cuts it
], ids=["tokens", "error", "not-json", "not-utf8", "cut-line"])
@pytest.mark.parametrize("apart", [False, True], ids=["same-read", "later-read"])
def test_ollama_lines_after_the_final_one_are_ignored(after: bytes, apart: bool) -> None:
    said = ollama_chunk("Hi") + ollama_final()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
    wire = (head + said + after,) if not apart else (head + said, after)

    async def run() -> RequestRecord:
        async with Served(writes(*wire, pause_s=0.02)) as served:
            root = served.url.removesuffix("/v1/completions")
            async with OllamaClient(root, "m", max_tokens=8, timeout_s=5) as client:
                return await client.send(0, "hi")
    record = asyncio.run(run())
    assert record.ok, record.error
    assert (record.output_tokens, len(record.chunk_ns)) == (8, 1)


# --- certificates -----------------------------------------------------------------------------

_CA_CONFIG = """[ca]
default_ca = d
[d]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = p
copy_extensions = copy
unique_subject = no
[p]
commonName = supplied
"""


def _openssl(where: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Self-signed certificates, each trusted by the client: ``wrong-host`` is for another
    host than 127.0.0.1, ``expired`` for 127.0.0.1 but valid only on 1 January 2020 (the
    openssl command's ``ca`` sets the dates)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    where = tmp_path_factory.mktemp("tls")
    _openssl(where, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=wrong.example", "-addext", "subjectAltName=DNS:wrong.example",
             "-keyout", "wrong-key.pem", "-out", "wrong.pem")
    (where / "ca.cnf").write_text(_CA_CONFIG)
    (where / "index.txt").write_text("")
    (where / "serial").write_text("01\n")
    _openssl(where, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "old-key.pem",
             "-out", "old.csr")
    _openssl(where, "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "old-key.pem",
             "-in", "old.csr", "-out", "old.pem", "-notext",
             "-startdate", "20200101000000Z", "-enddate", "20200102000000Z")
    return {"wrong-host": (where / "wrong.pem", where / "wrong-key.pem"),
            "expired": (where / "old.pem", where / "old-key.pem")}


@pytest.mark.parametrize(("which", "problem"), [
    ("wrong-host", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ("expired", "certificate has expired"),
])
def test_a_certificate_for_another_host_or_out_of_date_is_a_connection_failure(
        certificates: dict[str, tuple[Path, Path]], which: str, problem: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = certificates[which]
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    original = ssl.create_default_context

    def trusting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        context.load_verify_locations(cafile=str(cert))  # trusted: only its host or dates fail
        return context
    monkeypatch.setattr(ssl, "create_default_context", trusting)

    async def run() -> RequestRecord:
        async with Served(writes(answer(WHOLE)), tls=server_side) as served:
            base = served.url.rsplit("/", 1)[0]
            async with StreamingClient(Endpoint(base, "m"), max_tokens=2, timeout_s=10) as client:
                return await client.send(0, "hi")
    record = asyncio.run(run())
    failed(record, "connection", "certificate verify failed", problem)


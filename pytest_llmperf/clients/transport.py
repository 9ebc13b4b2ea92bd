"""HTTP/1.1 connections for streamed answers, on asyncio's Protocol API.

Every network read of an answer is stamped and handed to its reader inside ``data_received``,
the moment the event loop delivers it; httptools (llhttp, the parser uvicorn runs) takes the
HTTP framing off: status line, headers, chunked encoding.  No task wakes up per read.  With
aiohttp's reader each read also went through a StreamReader, a future and a task wake-up: about
half of the client's cost per token, and at a few hundred streams the event loop fell behind
the tokens it was timing (benchmarks/fidelity.py).

A :class:`Connection` carries one request at a time.  What goes wrong below HTTP is a
:class:`TransportError`: :class:`ConnectError` (no connection), :class:`ServerDisconnected`
(closed before the answer began), :class:`PayloadError` (closed or broken inside the answer),
:class:`BadResponse` (not HTTP).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["BadResponse", "ConnectError", "Connection", "Origin", "PayloadError",
           "ServerDisconnected", "TransportError", "connect", "request_head"]

Reader = Callable[[bytes, int], None]  # a read of the body, and when it arrived (ns)
_ERROR_BODY_LIMIT = 64 * 1024  # of a non-200 answer's body, what is kept for the message


class TransportError(Exception):
    """The exchange failed below HTTP: no answer, or a broken one."""


class ConnectError(TransportError):
    """No connection could be opened."""


class ServerDisconnected(TransportError):
    """The connection closed (or could not be written) before a byte of the answer came."""


class PayloadError(TransportError):
    """The connection closed, or the framing broke, inside the answer."""


class BadResponse(TransportError):
    """What came back is not an HTTP response the parser can read."""


@dataclass(frozen=True)
class Origin:
    """Where a URL's requests go: scheme, host and port, and the request target."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as the request line carries it

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, target)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def request_head(origin: Origin, length: int, headers: dict[str, str], *,
                 keep_alive: bool) -> bytes:
    """A POST's request line and headers.  Answers come uncompressed (identity): a token
    must reach the reader when it arrives, not when a compressor flushes."""
    lines = [f"POST {origin.target} HTTP/1.1", f"Host: {origin.host_header}",
             "Accept: */*", "Accept-Encoding: identity", "User-Agent: pytest-llmperf",
             f"Content-Length: {length}", f"Connection: {'keep-alive' if keep_alive else 'close'}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def connect(origin: Origin, ssl_context: ssl.SSLContext | None = None) -> Connection:
    """A fresh connection to ``origin`` (TLS for https, certificates verified)."""
    loop = asyncio.get_running_loop()
    tls: ssl.SSLContext | None = None
    if origin.scheme == "https":
        tls = ssl_context or ssl.create_default_context()
    try:
        _, connection = await loop.create_connection(
            Connection, origin.host, origin.port, ssl=tls,
            server_hostname=origin.host if tls else None)
    except OSError as exc:
        raise ConnectError(f"Cannot connect to host {origin.host}:{origin.port} "
                           f"ssl:{tls is not None} [{exc.strerror or exc}]") from exc
    return connection


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, one request at a time: :meth:`send` writes a request and
    waits for the answer's head, :meth:`stream` hands its body to a reader read by read."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._answer: _Answer | None = None
        self.closed = False
        self.reused = False  # it carried an earlier request
        self.idle_since = 0.0  # loop time it went back to a pool

    # -- asyncio's side ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A socket transport (uvloop's is one too, though not asyncio.Transport's subclass).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now_ns = time.perf_counter_ns()  # first: the read arrived now
        if self._answer is None:  # bytes nobody asked for: the connection is not usable
            self.close()
            return
        self._answer.received(data, now_ns)
        if self._answer.failed:
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None:
            self._answer.lost(exc)

    # -- the client's side ------------------------------------------------------------------

    @property
    def sent_ns(self) -> int:
        """When the current request was written (0: not yet)."""
        return self._answer.sent_ns if self._answer is not None else 0

    @property
    def answered(self) -> bool:
        """A byte of the current answer has come."""
        return self._answer is not None and self._answer.got_bytes

    async def send(self, head: bytes, body: bytes) -> int:
        """Write a request; returns the answer's status once its head has come."""
        if self.closed or self._transport is None or self._transport.is_closing():
            raise ServerDisconnected("Server disconnected")
        answer = self._answer = _Answer(asyncio.get_running_loop())
        answer.sent_ns = time.perf_counter_ns()
        try:
            self._transport.write(head + body)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a transport closed meanwhile
            raise ServerDisconnected(f"the request could not be written: {exc}") from exc
        return await answer.head

    async def stream(self, reader: Reader) -> None:
        """Hand every read of the answer's body to ``reader`` until the answer ends.  An
        exception ``reader`` raises ends the exchange and is raised here."""
        answer = self._current()
        answer.attach(reader)
        if answer.failed:
            self.close()
        await answer.done

    async def read_body(self) -> bytes:
        """The rest of the answer's body (at most 64 KiB of it kept), for error messages."""
        kept: list[bytes] = []
        size = 0

        def keep(raw: bytes, now_ns: int) -> None:
            nonlocal size
            if size < _ERROR_BODY_LIMIT:
                kept.append(raw[: _ERROR_BODY_LIMIT - size])
                size += len(kept[-1])

        await self.stream(keep)
        return b"".join(kept)

    @property
    def keep_alive(self) -> bool:
        """The answer ended cleanly and the server keeps the connection open."""
        answer = self._answer
        return (not self.closed and answer is not None and answer.complete
                and answer.keep_alive)

    def finish(self) -> None:
        """The exchange is over; the connection may carry the next request."""
        self._answer = None
        self.reused = True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.closed = True

    def _current(self) -> _Answer:
        if self._answer is None:
            raise RuntimeError("no request on this connection")
        return self._answer


class _Answer:
    """One response as it arrives: httptools' callbacks land here."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.head: asyncio.Future[int] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.sent_ns = 0
        self.got_bytes = False
        self.complete = False
        self.keep_alive = False
        self.failed = False
        self._framed = False  # Content-Length or chunked; else the body ends with the connection
        self._encoding = b""
        self._decoder: zlib._Decompress | None = None
        self._reader: Reader | None = None
        self._early: list[tuple[bytes, int]] = []  # body that came before a reader
        self._now_ns = 0

    def received(self, data: bytes, now_ns: int) -> None:
        self.got_bytes = True
        self._now_ns = now_ns
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # a reader raised: that is the cause
            self.fail(exc.__context__ or exc)
        except httptools.HttpParserError as exc:
            self.fail(PayloadError(f"malformed HTTP answer: {exc}") if self.head.done()
                      else BadResponse(f"not an HTTP answer: {exc}"))

    def lost(self, exc: Exception | None) -> None:
        if self.complete:
            return
        if self.head.done() and not self._framed and exc is None:
            self.on_message_complete()  # a body without length ends with its connection
            return
        reason = f": {exc}" if exc else ""
        if not self.got_bytes:
            self.fail(ServerDisconnected(f"Server disconnected{reason}"))
        elif not self.head.done():
            self.fail(BadResponse(f"the connection closed inside the answer's head{reason}"))
        else:
            self.fail(PayloadError(f"Response payload is not completed: the connection "
                                   f"closed inside the answer{reason}"))

    def attach(self, reader: Reader) -> None:
        early, self._early = self._early, []
        try:
            for raw, now_ns in early:  # came with the head, at their own times
                reader(raw, now_ns)
        except Exception as exc:  # as if raised where the read came: it ends the exchange
            self.fail(exc)
            return
        self._reader = reader

    def fail(self, exc: BaseException) -> None:
        self.failed = True
        for future in (self.head, self.done):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: the one awaited raises, the other stays quiet

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding"
                                         and b"chunked" in value.lower()):
            self._framed = True
        elif name == b"content-encoding":
            self._encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        if self._encoding in (b"gzip", b"deflate"):  # sent though we asked for identity
            self._decoder = zlib.decompressobj(wbits=47)  # 47: gzip or zlib, by the header
        elif self._encoding not in (b"", b"identity"):
            raise BadResponse(f"unsupported Content-Encoding: {self._encoding.decode()}")
        if not self.head.done():
            self.head.set_result(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            body = self._decoder.decompress(body)
            if not body:
                return
        if self._reader is None:
            self._early.append((body, self._now_ns))
        else:
            self._reader(body, self._now_ns)

    def on_message_complete(self) -> None:
        if self._decoder is not None:
            tail, self._decoder = self._decoder.flush(), None
            if tail:
                self.on_body(tail)
        self.complete = True
        if not self.done.done():
            self.done.set_result(None)

"""HTTP/1.1 connections for streamed answers, on asyncio's Protocol API.

Every network read of an answer is stamped and handed to its reader inside ``data_received``,
the moment the event loop delivers it; httptools (llhttp, the parser uvicorn runs) takes the
HTTP framing off: status line, headers, chunked encoding.  No task wakes up per read.  With
aiohttp's reader each read also went through a StreamReader, a future and a task wake-up: about
half of the client's cost per token, and at a few hundred streams the event loop fell behind
the tokens it was timing (benchmarks/fidelity.py).

A :class:`Connection` carries one request at a time.  What goes wrong below HTTP is a
:class:`TransportError`: :class:`ConnectError` (no connection; :class:`ClientLimit` when the
client's own machine ran out of file descriptors or ports), :class:`ServerDisconnected` (closed
before the answer began), :class:`PayloadError` (closed or broken inside the answer),
:class:`BadResponse` (not HTTP), :class:`MalformedAnswer` (HTTP, but its body cannot be read).

Whatever a server sends costs the client bounded memory: the head (and any 1xx answers before
it) and any stretch without a byte of body may take :data:`HEAD_LIMIT` bytes, a compressed body
is inflated in bounded pieces (:mod:`~pytest_llmperf.clients.inflate`).  1xx answers (103 Early
Hints, 100 Continue) are passed over; bytes after the answer are nobody's, and the connection
they came on carries nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

from pytest_llmperf.clients.response import (
    HEAD_LIMIT,
    BadResponse,
    ClientLimit,
    ConnectError,
    MalformedAnswer,
    PayloadError,
    Reader,
    Response,
    ServerDisconnected,
    TransportError,
)

__all__ = ["HEAD_LIMIT", "BadResponse", "ClientLimit", "ConnectError", "Connection",
           "MalformedAnswer", "Origin", "PayloadError", "ServerDisconnected", "TransportError",
           "connect", "request_head"]

_ERROR_BODY_LIMIT = 64 * 1024  # of a non-200 answer's body, what is kept for the message
# errno of a connect that failed for want of the client's own resources, and what ran out.
_CLIENT_LIMITS = {errno.EMFILE: "file descriptors (the process's limit, ulimit -n)",
                  errno.ENFILE: "file descriptors (the system's limit)",
                  errno.EADDRNOTAVAIL: "local ports", errno.ENOBUFS: "socket buffers",
                  errno.ENOMEM: "memory"}


class _Enough(Exception):
    """Raised by a reader that has read all it wants: the rest of the answer is not read."""


@dataclass(frozen=True)
class Origin:
    """Where a URL's requests go: scheme, host and port, and the request target."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as the request line carries it

    @classmethod
    def parse(cls, url: str) -> Origin:
        """``url``'s origin, with what a request head carries only as ASCII made so: an
        international host as punycode, other characters of the path percent-encoded."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"not an http(s) URL: {_shown(url)}")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(f"no request can carry the host of {_shown(url)}") from None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, host, port, quote(target, safe="!#$%&'()*+,/:;=?@[]"))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _shown(url: str) -> str:
    """``url`` for a message: a user and password in it are not shown."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return repr(f"{scheme}://{netloc}{slash}{path}" if rest else url)


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
        where = f"host {origin.host}:{origin.port} ssl:{tls is not None}"
        if exc.errno in _CLIENT_LIMITS:
            raise ClientLimit(f"the client ran out of {_CLIENT_LIMITS[exc.errno]} opening a "
                              f"connection to {where} [{exc.strerror or exc}]: a limit of the "
                              f"client's machine, not the server's") from exc
        raise ConnectError(f"Cannot connect to {where} [{exc.strerror or exc}]") from exc
    return connection


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, one request at a time: :meth:`send` writes a request and
    waits for the answer's head, :meth:`stream` hands its body to a reader read by read."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._answer: Response | None = None
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
        if self._answer.unusable:  # broken, or bytes after the answer: nothing more to carry
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
        answer = self._answer = Response(asyncio.get_running_loop())
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
        if answer.error is not None:  # it failed after its last byte had come (attach)
            raise answer.error

    async def read_body(self) -> bytes:
        """The answer's body up to 64 KiB, for error messages; the rest is not read (the
        connection is then closed)."""
        kept: list[bytes] = []
        size = 0

        def keep(raw: bytes, now_ns: int) -> None:
            nonlocal size
            kept.append(raw[: _ERROR_BODY_LIMIT - size])
            size += len(kept[-1])
            if size >= _ERROR_BODY_LIMIT:
                raise _Enough

        with contextlib.suppress(_Enough):
            await self.stream(keep)
        return b"".join(kept)

    @property
    def location(self) -> str:
        """The current answer's Location header (a redirect's target), as it came."""
        return self._answer.location if self._answer is not None else ""

    @property
    def content_type(self) -> str:
        """The current answer's Content-Type, as it came."""
        return self._answer.content_type if self._answer is not None else ""

    @property
    def keep_alive(self) -> bool:
        """The answer ended cleanly and the server keeps the connection open."""
        answer = self._answer
        return (not self.closed and answer is not None and answer.complete
                and answer.keep_alive and not answer.trailing)

    def finish(self) -> None:
        """The exchange is over; the connection may carry the next request."""
        self._answer = None
        self.reused = True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.closed = True

    def _current(self) -> Response:
        if self._answer is None:
            raise RuntimeError("no request on this connection")
        return self._answer



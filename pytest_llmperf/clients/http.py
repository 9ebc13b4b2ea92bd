"""The HTTP base of the streaming clients: their connections, one rule for connections the
server has closed, and the time limits.

The connections are our own (:mod:`~pytest_llmperf.clients.transport`): each network read of an
answer is stamped and parsed where the event loop delivers it, so the client keeps up with
hundreds of streams without timing its own backlog as the server's.

Servers may close a kept-alive connection while it sits in our pool: llama.cpp closes it after
every streamed answer although it announces ``Keep-Alive: timeout=5``, and uvicorn-based
servers (vLLM, SGLang) close connections idle for 5 s.  The next request on such a connection
fails before the server has said a byte.  That is not a failed request, so :meth:`exchange`
sends it once more, on a fresh connection, only when all of these hold:

- the failed attempt ran on a pooled (reused) connection, not on one opened for it;
- it failed before a single byte of the response arrived (no status line);
- it is the kind of failure a closed connection gives (disconnected, or the write failed).

A server that dies after it accepted a request is then caught either way: on a fresh connection
there is no resend, and a resend to a dead server fails too; the record then carries the time of
the first send and both errors.  After the first such failure the client stops reusing
connections (every request opens its own and asks the server to close it), so a server that
closes them cannot cost another resend, and the resend itself never takes a pooled connection.

A request's send time is when it was handed to the connection, just before the write: with
many streams, building the others' requests first would otherwise be timed as the server's.

A client whose machine runs out of file descriptors (or local ports) when connecting keeps no
idle connection from then on: each holds a descriptor that the other users' connections, and
the window's own observers (CPU readings, the last metrics scrape), need; the window is marked
client-bound all the same (observe.health).

A client makes one TLS context, the first time it connects over https, and every connection
shares it: making one costs about 20 ms on the event loop, on every request once reuse is off.
Redirects are not followed (a POST's stream cannot be sent again by the client's own choice):
a 3xx is the request's failure, ``redirected``, naming where the server points.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

from pytest_llmperf.clients.base import short, timeout_message
from pytest_llmperf.clients.transport import (
    BadResponse,
    ClientLimit,
    Connection,
    MalformedAnswer,
    Origin,
    PayloadError,
    ServerDisconnected,
    TransportError,
    connect,
    request_head,
)
from pytest_llmperf.results.errors import ErrorKind

__all__ = ["Exchanged", "HttpClient", "ResendFailed", "TransportError", "status_message",
           "transport_kind", "yield_to_other_reads"]

_Client = TypeVar("_Client", bound="HttpClient")
# Below the 5 s keep-alive of uvicorn (vLLM, SGLang) and llama.cpp: a connection idle longer
# than this is not reused, so the server's own idle close rarely meets a request.
_KEEPALIVE_S = 4.0


class Exchanged(NamedTuple):
    send_ns: int  # when the request that got this answer was written (module docstring)
    status: int
    resent: bool  # the first attempt's pooled connection had closed (see the module docstring)
    error_body: bytes = b""  # the body of an answer that is not 200
    location: str = ""  # a redirect's Location, as it came
    content_type: str = ""


class ResendFailed(TransportError):
    """The resend of a request whose pooled connection had closed failed too."""

    def __init__(self, first: BaseException, second: BaseException, first_send_ns: int):
        super().__init__(f"{_describe(first)} on a pooled connection; sent again on a fresh "
                         f"connection: {_describe(second)}")
        self.first_send_ns = first_send_ns
        self.second = second


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class HttpClient:
    """A client's connections, closed by ``async with``: kept alive and reused while the
    server keeps them (unless ``reuse_connections`` is off from the start, for servers known
    to close them), else a fresh one per request."""

    def __init__(self, *, timeout_s: float, api_key: str | None = None,
                 reuse_connections: bool = True,
                 first_token_timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s  # the whole answer
        # The first token (of any kind); None: only the whole answer's limit applies.
        self.first_token_timeout_s = first_token_timeout_s
        self.reuse_connections = reuse_connections
        self.resends = 0  # requests sent once more after their pooled connection had closed
        self._headers = {"Content-Type": "application/json"}
        self._api_key = api_key  # only to mask it in what a server answers
        if api_key:
            if not api_key.isprintable() or not _latin1(api_key):
                # Refused here, before any request: a header cannot carry it (a line break
                # would even start a header of its own).  The key itself is never shown.
                raise ValueError("the API key holds a line break, a control character or a "
                                 "character outside Latin-1: no HTTP header can carry it")
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._open = False
        self._tls: ssl.SSLContext | None = None  # made once, for the first https connection
        self._idle: dict[Origin, list[Connection]] = {}
        self._origins: dict[str, Origin] = {}
        self._all: weakref.WeakSet[Connection] = weakref.WeakSet()

    async def __aenter__(self: _Client) -> _Client:
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        for connection in list(self._all):
            connection.close()
        self._idle.clear()

    async def exchange(self, url: str, body: bytes, on_read: Callable[[bytes, int], None],
                       answered: Callable[[], bool]) -> Exchanged:
        """POST ``body`` and hand every network read of a 200 answer, with the time it
        arrived, to ``on_read``, until the answer ends; another status comes back with its
        body.  The whole exchange is held to ``timeout_s``, and until ``answered()`` to
        ``first_token_timeout_s``: either raises TimeoutError."""
        if not self._open:
            raise RuntimeError(f"{type(self).__name__} is used outside 'async with'")
        origin = self._origins.get(url) or self._origins.setdefault(url, Origin.parse(url))
        async with asyncio.timeout(self.timeout_s), \
                asyncio.timeout(self.first_token_timeout_s) as first_token:
            connection, sent = await self._send(origin, body)
            done = False
            try:
                sent = sent._replace(location=connection.location,
                                     content_type=connection.content_type)
                if sent.status != 200:
                    sent = sent._replace(error_body=await connection.read_body())
                elif self.first_token_timeout_s is None:
                    await connection.stream(on_read)
                else:
                    await connection.stream(_lifting(first_token, on_read, answered))
                done = True
            finally:
                self._release(origin, connection, done)
        return sent

    def timeout_message(self, answered: bool) -> str:
        """What a request that ran out of time is told: which limit it ran into."""
        return timeout_message(self.timeout_s, self.first_token_timeout_s, answered)

    async def _send(self, origin: Origin, body: bytes) -> tuple[Connection, Exchanged]:
        """Send on a pooled or fresh connection; once more on a fresh one when a pooled
        connection turns out closed (module docstring)."""
        connection = await self._connection(origin)
        try:
            status = await connection.send(self._head(origin, body), body)
            return connection, Exchanged(connection.sent_ns, status, resent=False)
        except ServerDisconnected as first:
            connection.close()
            if not connection.reused:
                raise
            first_send_ns = connection.sent_ns
            self.reuse_connections = False  # this server closes connections: stop reusing
            self.resends += 1
            return await self._resend(origin, body, first, first_send_ns)
        except BaseException:
            connection.close()
            raise

    async def _resend(self, origin: Origin, body: bytes, first: BaseException,
                      first_send_ns: int) -> tuple[Connection, Exchanged]:
        try:
            fresh = await self._connection(origin)
        except TransportError as second:
            raise ResendFailed(first, second, first_send_ns) from second
        try:
            status = await fresh.send(self._head(origin, body), body)
        except TransportError as second:
            fresh.close()
            raise ResendFailed(first, second, first_send_ns) from second
        except BaseException:
            fresh.close()
            raise
        return fresh, Exchanged(fresh.sent_ns, status, resent=True)

    def _head(self, origin: Origin, body: bytes) -> bytes:
        return request_head(origin, len(body), self._headers,
                            keep_alive=self.reuse_connections)

    async def _connection(self, origin: Origin) -> Connection:
        """The most recently used idle connection to ``origin`` while reusing, else a new
        one."""
        if self.reuse_connections:
            idle = self._idle.get(origin, [])
            now = asyncio.get_running_loop().time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < _KEEPALIVE_S:
                    return connection
                connection.close()
        if origin.scheme == "https" and self._tls is None:
            self._tls = ssl.create_default_context()
        try:
            connection = await connect(origin, self._tls)
        except ClientLimit:
            self._keep_none()
            raise
        self._all.add(connection)
        return connection

    def _keep_none(self) -> None:
        """The machine ran out opening a connection: no idle one is kept from now on
        (module docstring)."""
        self.reuse_connections = False
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def _release(self, origin: Origin, connection: Connection, done: bool) -> None:
        if done and self.reuse_connections and self._open and connection.keep_alive:
            connection.finish()
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _lifting(first_token: asyncio.Timeout, on_read: Callable[[bytes, int], None],
             answered: Callable[[], bool]) -> Callable[[bytes, int], None]:
    """``on_read`` that lifts the first-token limit once the first token has come."""
    waiting = True

    def read(raw: bytes, now_ns: int) -> None:
        nonlocal waiting
        on_read(raw, now_ns)
        if waiting and answered():
            first_token.reschedule(None)
            waiting = False

    return read


async def yield_to_other_reads() -> None:
    """Let the reads that came with this answer's last one be stamped first.

    Many streams often end together (a closed loop's users started together).  Building a
    record and the next request takes a few hundred microseconds; done at once, stream by
    stream, it would delay every other stream's last read by all the work before it, and those
    tokens would look slow.  One turn of the event loop puts that work behind them."""
    await asyncio.sleep(0)


def transport_kind(exc: TransportError, *, answered: bool) -> ErrorKind:
    """A transport failure's category: the client's own machine running out is the client's
    limit; a body that cannot be read is malformed; a stream cut after the answer began is
    truncated, an answer that is not HTTP malformed; one that never got that far could not
    connect (refused, reset, closed)."""
    if isinstance(exc, ResendFailed):
        return (ErrorKind.CLIENT_LIMIT if isinstance(exc.second, ClientLimit)
                else ErrorKind.CONNECTION)
    if isinstance(exc, ClientLimit):
        return ErrorKind.CLIENT_LIMIT
    if isinstance(exc, MalformedAnswer):
        return ErrorKind.MALFORMED
    if answered or isinstance(exc, PayloadError):
        return ErrorKind.TRUNCATED
    if isinstance(exc, BadResponse):
        return ErrorKind.MALFORMED
    return ErrorKind.CONNECTION


def status_message(sent: Exchanged, body: str, api_key: str | None = None) -> str:
    """What a request answered with a status other than 200 is told: ``HTTP 503: <body>``;
    for a redirect, where the server points (no credentials, query or fragment of it).  The
    body of a refusal of the credentials (401, 403) is not kept, as it may quote them; any
    other body has ``api_key`` masked."""
    if 300 <= sent.status < 400:
        where = _bare_url(sent.location)
        return (f"HTTP {sent.status}: the server redirects the request"
                + (f" to {where}" if where else "") + "; the client follows no redirect: "
                "point --base-url at where the server answers")
    if sent.status in (401, 403):
        return (f"HTTP {sent.status}: the server refused the request's credentials (its answer "
                "is not kept: it may quote them); check --api-key-env")
    if api_key:
        body = body.replace(api_key, "[API key]")
    return f"HTTP {sent.status}: {short(body)}"


def _bare_url(location: str) -> str:
    """``location`` without userinfo, query or fragment, printable characters only."""
    try:
        parts = urlsplit(location)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return ""
    host = f"[{host}]" if ":" in host else host
    bare = (f"{parts.scheme}://{host}{port}" if parts.scheme and host else "") + parts.path
    return "".join(c for c in bare if c.isprintable() and not c.isspace())[:200]

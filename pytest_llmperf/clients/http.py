"""The aiohttp base of the streaming clients: their sessions, and one rule for connections the
server has closed.

Servers may close a kept-alive connection while it sits in our pool: llama.cpp closes it after
every streamed answer although it announces ``Keep-Alive: timeout=5``, and uvicorn-based
servers (vLLM, SGLang) close connections idle for 5 s.  The next request on such a connection
fails before the server has said a byte.  That is not a failed request, so :meth:`post` sends it
once more, on a fresh connection, only when all of these hold:

- the failed attempt ran on a pooled (reused) connection, not on one opened for it;
- it failed before a single byte of the response arrived (no status line);
- it is the kind of failure a closed connection gives (disconnected, or the write failed).

A server that dies after it accepted a request is then caught either way: on a fresh connection
there is no resend, and a resend to a dead server fails too; the record then carries the time of
the first send and both errors.  After the first such failure the client stops reusing
connections (a session whose connector opens a fresh one per request), so a server that closes
them cannot cost another resend, and the resend itself never takes a pooled connection.

A request's send time is when its body was written to the connection (aiohttp's chunk-sent
trace, read just before the write), not when the client began to build it: with many streams,
building the others' requests first (on Python 3.11 aiohttp writes the body from a task of its
own) would otherwise be timed as the server's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace, TracebackType
from typing import Any, NamedTuple, TypeVar

import aiohttp

from pytest_llmperf.clients.base import timeout_message
from pytest_llmperf.results.errors import ErrorKind

__all__ = ["HttpClient", "ResendFailed", "Sent", "transport_kind", "yield_to_other_reads"]

_Client = TypeVar("_Client", bound="HttpClient")
# Below the 5 s keep-alive of uvicorn (vLLM, SGLang) and llama.cpp: a connection idle longer
# than this is not reused, so the server's own idle close rarely meets a request.
_KEEPALIVE_S = 4.0
_CLOSED_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
                      aiohttp.ClientConnectionResetError)


class Sent(NamedTuple):
    send_ns: int  # when the request that got this response was written (module docstring)
    response: aiohttp.ClientResponse
    resent: bool  # the first attempt's pooled connection had closed (see the module docstring)


class ResendFailed(aiohttp.ClientError):
    """The resend of a request whose pooled connection had closed failed too."""

    def __init__(self, first: BaseException, second: BaseException, first_send_ns: int):
        super().__init__(f"{_describe(first)} on a pooled connection; sent again on a fresh "
                         f"connection: {_describe(second)}")
        self.first_send_ns = first_send_ns


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class HttpClient:
    """A client's aiohttp sessions, opened and closed by ``async with``: one that pools
    connections, and, once pooling has proved unsafe (or from the start, for servers known to
    close them), one that opens a fresh connection for every request."""

    def __init__(self, *, timeout_s: float, api_key: str | None = None,
                 reuse_connections: bool = True,
                 first_token_timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s  # the whole answer
        # The first token (of any kind); None: only the whole answer's limit applies.
        self.first_token_timeout_s = first_token_timeout_s
        self.reuse_connections = reuse_connections
        self.resends = 0  # requests sent once more after their pooled connection had closed
        self._api_key = api_key
        self._pooled: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None

    async def __aenter__(self: _Client) -> _Client:
        self._pooled = self._open(force_close=False)
        return self

    def _open(self, *, force_close: bool) -> aiohttp.ClientSession:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        trace = aiohttp.TraceConfig()
        trace.on_connection_reuseconn.append(_mark_reused)
        trace.on_request_chunk_sent.append(_mark_sent)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True) if force_close
            else aiohttp.TCPConnector(limit=0, keepalive_timeout=_KEEPALIVE_S),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            trace_configs=[trace],
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for session in (self._pooled, self._fresh):
            if session is not None:
                await session.close()
        self._pooled = self._fresh = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session the next request goes out on: pooled connections while the server
        keeps them, else a fresh connection for every request."""
        if self._pooled is None:
            raise RuntimeError(f"{type(self).__name__} is used outside 'async with'")
        if self.reuse_connections:
            return self._pooled
        if self._fresh is None:
            self._fresh = self._open(force_close=True)
        return self._fresh

    async def post(self, url: str, body: bytes) -> Sent:
        """POST ``body``; returns when it was sent and the response (headers read).

        See the module docstring for the one case in which it is sent a second time.
        """
        attempt: dict[str, Any] = {}
        send_ns = time.perf_counter_ns()
        try:
            response = await self._post(url, body, attempt)
            return Sent(attempt.get("sent_ns", send_ns), response, resent=False)
        except _CLOSED_CONNECTION as first:
            if not attempt.get("reused"):
                raise
            self.reuse_connections = False  # this server closes connections: stop reusing
            self.resends += 1
            again: dict[str, Any] = {}
            resend_ns = time.perf_counter_ns()
            try:
                response = await self._post(url, body, again)
                return Sent(again.get("sent_ns", resend_ns), response, resent=True)
            except aiohttp.ClientError as second:
                raise ResendFailed(first, second, attempt.get("sent_ns", send_ns)) from second

    def timeout_message(self, answered: bool) -> str:
        """What a request that ran out of time is told: which limit it ran into."""
        return timeout_message(self.timeout_s, self.first_token_timeout_s, answered)

    async def read_all(self, response: aiohttp.ClientResponse, first_token: asyncio.Timeout,
                       on_read: Callable[[bytes, int], None],
                       answered: Callable[[], bool]) -> None:
        """Hand every network read of ``response``, with the time it arrived, to ``on_read``;
        ``first_token`` (the first-token limit) is lifted once ``answered()``."""
        waiting = self.first_token_timeout_s is not None
        async for raw in response.content.iter_any():
            on_read(raw, time.perf_counter_ns())  # the time first: the read arrived now
            if waiting and answered():  # the first token came: that limit is met
                first_token.reschedule(None)
                waiting = False

    async def _post(self, url: str, body: bytes, attempt: dict[str, Any]) -> Any:
        return await self.session.post(url, data=body, trace_request_ctx=attempt)


async def _mark_reused(session: aiohttp.ClientSession, context: SimpleNamespace,
                       params: Any) -> None:
    # aiohttp hands the request's trace_request_ctx to the trace as context.trace_request_ctx.
    context.trace_request_ctx["reused"] = True


async def yield_to_other_reads() -> None:
    """Let the reads that came with this answer's last one be stamped first.

    Many streams often end together (a closed loop's users started together).  Building a
    record and the next request takes a few hundred microseconds; done at once, stream by
    stream, it would delay every other stream's last read by all the work before it, and those
    tokens would look slow.  One turn of the event loop puts that work behind them."""
    await asyncio.sleep(0)


async def _mark_sent(session: aiohttp.ClientSession, context: SimpleNamespace,
                     params: Any) -> None:
    # Called just before each body chunk is written; the last one's time is the send time.
    context.trace_request_ctx["sent_ns"] = time.perf_counter_ns()


def transport_kind(exc: aiohttp.ClientError, *, answered: bool) -> ErrorKind:
    """A transport failure's category: a stream cut after the answer began is truncated; one
    that never got that far could not connect (refused, reset, closed)."""
    if answered or isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorKind.TRUNCATED
    return ErrorKind.CONNECTION

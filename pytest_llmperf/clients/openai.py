"""Async streaming client for OpenAI-compatible servers (chat and text completions).

One :class:`StreamingClient` sends one request at a time per call to :meth:`send`; load
generators call it from many tasks at once, and nothing here serialises them.  Each call returns
an immutable :class:`~pytest_llmperf.results.records.RequestRecord` with a
``perf_counter_ns`` reading per network read that carried generated text.  Output tokens come
from the server's ``usage``
block, else from the model's tokenizer; never from characters.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

import aiohttp

from pytest_llmperf.clients.sse import SSEEvent, SSEParser
from pytest_llmperf.results.records import RequestRecord, TokenSource

__all__ = ["Endpoint", "HttpClient", "RequestSender", "StreamingClient", "TokenCounter",
           "build_payload"]

Api = Literal["chat", "completions"]
_ERROR_TEXT_LIMIT = 300


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send requests.  ``api_key`` never appears in ``repr``."""

    base_url: str  # ends before /chat/completions, e.g. http://127.0.0.1:8080/v1
    model: str
    api: Api = "chat"
    api_key: str | None = field(default=None, repr=False)
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    # llama.cpp closes the connection after each streamed answer although it announces
    # keep-alive; reusing such connections makes the next POST fail before it is sent.
    reuse_connections: bool = True

    @property
    def url(self) -> str:
        path = "chat/completions" if self.api == "chat" else "completions"
        return f"{self.base_url.rstrip('/')}/{path}"


class RequestSender(Protocol):
    """Sends one request and returns its record; errors become the record's, never raised.

    :class:`StreamingClient` is the one for OpenAI-compatible servers; engines with another
    API (Ollama) or none (in-process transformers) bring their own.
    """

    async def send(self, request_id: int, prompt: str) -> RequestRecord: ...


class TokenCounter(Protocol):
    """The model's tokenizer, used only when the server reports no usage."""

    async def count(self, session: aiohttp.ClientSession, text: str) -> int: ...


def build_payload(endpoint: Endpoint, prompt: str, max_tokens: int) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": endpoint.model,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if endpoint.api == "chat":
        payload["messages"] = [{"role": "user", "content": prompt}]
    else:
        payload["prompt"] = prompt
    payload.update(endpoint.extra_body)
    return payload


class _Stream:
    """What one response stream has said so far."""

    def __init__(self) -> None:
        self.chunk_ns: list[int] = []
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Mapping[str, Any] | None = None
        self.timings: Mapping[str, float] | None = None
        self.error: str | None = None
        self.done = False
        self.end_ns = 0

    def take(self, data: str) -> bool:
        """Apply one SSE data payload; True when it carried generated text."""
        if data == "[DONE]":
            self.done = True
            return False
        try:
            message = json.loads(data)
        except ValueError:
            self.error = f"malformed stream chunk: {_short(data)}"
            return False
        if not isinstance(message, dict):
            self.error = f"unexpected stream chunk: {_short(data)}"
            return False
        if "error" in message:
            self.error = f"server error in stream: {_short(json.dumps(message['error']))}"
            return False
        if message.get("usage"):
            self.usage = message["usage"]
        if message.get("timings"):
            self.timings = message["timings"]
        carried = False
        for choice in message.get("choices") or ():
            piece = _generated_text(choice)
            if piece:
                self.text.append(piece)
                carried = True
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return carried

    def read(self, events: list[SSEEvent], now_ns: int) -> None:
        """Apply the events of one network read: one reading if any of them carried text."""
        carried = [self.take(event.data) for event in events]  # all of them, in order
        if any(carried):
            self.chunk_ns.append(now_ns)


def _generated_text(choice: Mapping[str, Any]) -> str:
    """Text a chunk generated: chat delta content or reasoning, or completions text."""
    delta = choice.get("delta")
    if delta is not None:
        return (delta.get("content") or "") + (
            delta.get("reasoning_content") or delta.get("reasoning") or ""
        )
    return choice.get("text") or ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[:_ERROR_TEXT_LIMIT] + "..."


_Client = TypeVar("_Client", bound="HttpClient")


class HttpClient:
    """One aiohttp session for a client's lifetime, opened and closed by ``async with``."""

    def __init__(self, *, timeout_s: float, api_key: str | None = None,
                 reuse_connections: bool = True) -> None:
        self.timeout_s = timeout_s
        self._api_key = api_key
        self._reuse_connections = reuse_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self: _Client) -> _Client:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=not self._reuse_connections),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} is used outside 'async with'")
        return self._session


class StreamingClient(HttpClient):
    """Sends streaming requests to one OpenAI-compatible endpoint; use as ``async with``."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        max_tokens: int,
        token_counter: TokenCounter | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s, api_key=endpoint.api_key,
                         reuse_connections=endpoint.reuse_connections)
        self.endpoint = endpoint
        self.max_tokens = max_tokens
        self.token_counter = token_counter

    async def send(self, request_id: int, prompt: str) -> RequestRecord:
        """Send one request and stream its answer to the end; errors become the record's."""
        payload = build_payload(self.endpoint, prompt, self.max_tokens)
        body = json.dumps(payload).encode()
        try:
            send_ns, stream = await self._send_once_more_if_stale(body)
        except asyncio.TimeoutError:
            return self._failed(request_id, f"no complete answer within {self.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return self._failed(request_id, f"{type(exc).__name__}: {exc}")
        except UnicodeDecodeError:  # the stream ended inside a multi-byte character
            return self._failed(request_id, "stream ended inside a UTF-8 character")
        return await self._record(request_id, prompt, send_ns, stream)

    async def _send_once_more_if_stale(self, body: bytes) -> tuple[int, _Stream]:
        try:
            return await self._stream(body)
        except _StaleConnection:
            pass
        # A pooled connection the server had closed: nothing reached the server, so sending
        # again once is the same request, not a retry of a failed one.
        try:
            return await self._stream(body)
        except _StaleConnection as stale:
            assert isinstance(stale.__cause__, aiohttp.ClientError)
            raise stale.__cause__ from None

    @staticmethod
    def _failed(request_id: int, error: str) -> RequestRecord:
        now = time.perf_counter_ns()
        return RequestRecord(request_id, now, end_ns=now, error=error)

    async def _stream(self, body: bytes) -> tuple[int, _Stream]:
        stream = _Stream()
        parser = SSEParser()
        send_ns = time.perf_counter_ns()
        try:
            response = await self.session.post(self.endpoint.url, data=body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            if self.endpoint.reuse_connections:
                raise _StaleConnection from exc
            raise
        async with response:
            if response.status != 200:
                text = await response.text()
                stream.error = f"HTTP {response.status}: {_short(text)}"
                stream.end_ns = time.perf_counter_ns()
                return send_ns, stream
            async for raw in response.content.iter_any():
                now_ns = time.perf_counter_ns()
                stream.read(parser.feed(raw), now_ns)
            stream.read(parser.close(), time.perf_counter_ns())
        stream.end_ns = time.perf_counter_ns()
        return send_ns, stream

    async def _record(
        self, request_id: int, prompt: str, send_ns: int, stream: _Stream
    ) -> RequestRecord:
        error = stream.error
        if error is None and not stream.done and stream.finish_reason is None:
            error = "stream ended before the server finished the answer"
        output_tokens, output_source = 0, None
        input_tokens, input_source = None, None
        if stream.usage is not None:
            output_tokens = int(stream.usage.get("completion_tokens") or 0)
            output_source = TokenSource.USAGE
            if stream.usage.get("prompt_tokens") is not None:
                input_tokens, input_source = int(stream.usage["prompt_tokens"]), TokenSource.USAGE
        elif error is None and stream.chunk_ns:
            if self.token_counter is None:
                error = "the server reported no token usage and no tokenizer is available"
            else:
                output_tokens = await self.token_counter.count(self.session, "".join(stream.text))
                output_source = TokenSource.TOKENIZER
        if input_tokens is None and self.token_counter is not None and error is None:
            input_tokens = await self.token_counter.count(self.session, prompt)
            input_source = TokenSource.TOKENIZER
        return RequestRecord(
            request_id=request_id,
            send_ns=send_ns,
            chunk_ns=tuple(stream.chunk_ns),
            end_ns=stream.end_ns,
            output_tokens=output_tokens,
            output_token_source=output_source,
            input_tokens=input_tokens,
            input_token_source=input_source,
            finish_reason=stream.finish_reason,
            error=error,
            server_timings=dict(stream.timings or {}),
        )


class _StaleConnection(Exception):
    pass

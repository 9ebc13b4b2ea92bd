"""Async streaming client for OpenAI-compatible servers (chat and text completions).

One :class:`StreamingClient` sends one request at a time per call to :meth:`send`; load
generators call it from many tasks at once, and nothing here serialises them.  Each call returns
an immutable :class:`~pytest_llmperf.results.records.RequestRecord` with a ``perf_counter_ns``
reading per network read that carried generated text, reasoning or answer, and notes which
kind each read carried (:mod:`~pytest_llmperf.clients.reasoning`).  Output tokens come from the
server's ``usage`` block; without one the record keeps the text, and the model's tokenizer
counts it after the measured window (:mod:`pytest_llmperf.load.token_count`); so do reasoning
tokens where usage has no ``completion_tokens_details.reasoning_tokens``.  Never characters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_llmperf.clients.base import Prompt, as_prompt, short
from pytest_llmperf.clients.http import (
    HttpClient,
    ResendFailed,
    TransportError,
    status_message,
    transport_kind,
    yield_to_other_reads,
)
from pytest_llmperf.clients.openai_stream import OpenAIStream, stream_record
from pytest_llmperf.clients.sse import LineTooLong, SSEParser
from pytest_llmperf.results.errors import ErrorKind, http_kind
from pytest_llmperf.results.records import RequestRecord

__all__ = ["Endpoint", "StreamingClient", "build_payload"]

Api = Literal["chat", "completions", "embeddings", "rerank"]
_PATHS = {"chat": "chat/completions", "completions": "completions", "embeddings": "embeddings",
          "rerank": "rerank"}


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send requests.  ``api_key`` never appears in ``repr``."""

    base_url: str  # ends before /chat/completions, e.g. http://127.0.0.1:8080/v1
    model: str
    api: Api = "chat"
    api_key: str | None = field(default=None, repr=False)
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    # llama.cpp closes the connection after each streamed answer although it announces
    # keep-alive; clients for it open a fresh connection per request from the start.
    reuse_connections: bool = True
    # Exact answer lengths: every request then carries ignore_eos, and min_tokens_field (when
    # the engine has one: vLLM/SGLang "min_tokens", LMDeploy "min_new_tokens") set to that
    # request's own max_tokens.
    ignore_eos: bool = False
    min_tokens_field: str | None = None
    # The request field that switches the prefix cache per request (llama.cpp
    # "cache_prompt"); None where only the server's own setting decides.
    cache_field: str | None = None

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{_PATHS[self.api]}"


def build_payload(endpoint: Endpoint, prompt: Prompt | str, max_tokens: int) -> dict[str, Any]:
    """The request body.  ``max_tokens`` is the run's; a prompt with its own answer length
    overrides it, and the forced-length fields follow the length this request asks for."""
    prompt = as_prompt(prompt)
    max_tokens = prompt.max_tokens(max_tokens)
    payload: dict[str, Any] = {
        "model": endpoint.model,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if endpoint.api == "chat":
        payload["messages"] = prompt.messages()
    else:
        payload["prompt"] = prompt.flat_text()
    payload.update(endpoint.extra_body)
    if prompt.cache is not None and endpoint.cache_field:
        payload[endpoint.cache_field] = prompt.cache
    if prompt.json_schema is not None:  # the answer ends with its object: nothing forced
        payload["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": dict(prompt.json_schema), "strict": True}}
    if prompt.tools:  # a call is asked for, and it ends with its arguments: nothing forced
        payload["tools"] = [dict(tool) for tool in prompt.tools]
        payload["tool_choice"] = "required"
    if not prompt.checked and endpoint.ignore_eos:
        payload["ignore_eos"] = True
        if endpoint.min_tokens_field:
            payload[endpoint.min_tokens_field] = max_tokens
    return payload


class StreamingClient(HttpClient):
    """Sends streaming requests to one OpenAI-compatible endpoint; use as ``async with``."""

    def __init__(self, endpoint: Endpoint, *, max_tokens: int, timeout_s: float = 600.0,
                 first_token_timeout_s: float | None = None) -> None:
        super().__init__(timeout_s=timeout_s, api_key=endpoint.api_key,
                         reuse_connections=endpoint.reuse_connections,
                         first_token_timeout_s=first_token_timeout_s)
        self.endpoint = endpoint
        self.max_tokens = max_tokens

    async def send(self, request_id: int, prompt: Prompt | str) -> RequestRecord:
        """Send one request and stream its answer to the end; errors become the record's."""
        prompt = as_prompt(prompt)
        body = json.dumps(build_payload(self.endpoint, prompt, self.max_tokens)).encode()
        send_ns = time.perf_counter_ns()
        stream = OpenAIStream(keep_answer=prompt.json_schema is not None)
        try:
            send_ns, stream.resent = await self._exchange(body, stream)
        except TimeoutError:
            stream.fail(ErrorKind.TIMEOUT, self.timeout_message(bool(stream.chunk_ns)))
        except _Unreadable:  # the stream has its failure
            stream.end_ns = time.perf_counter_ns()
        except ResendFailed as exc:
            send_ns = exc.first_send_ns
            stream.fail(transport_kind(exc, answered=False), str(exc))
        except TransportError as exc:
            stream.fail(transport_kind(exc, answered=bool(stream.chunk_ns)),
                        f"{type(exc).__name__}: {exc}")
        return stream_record(request_id, prompt, prompt.max_tokens(self.max_tokens), send_ns,
                             stream)

    async def _exchange(self, body: bytes, stream: OpenAIStream) -> tuple[int, bool]:
        """POST ``body`` and read the answer into ``stream``; returns when it was sent and
        whether it was sent a second time."""
        parser = SSEParser(last="[DONE]")  # what comes after it is no part of the answer

        def read(raw: bytes, now_ns: int) -> None:
            if not stream.events:  # the body's start, should it be no event stream
                stream.keep_start(raw)
            try:
                events = parser.feed(raw)
            except UnicodeDecodeError as exc:
                stream.fail(ErrorKind.MALFORMED, f"the stream is not valid UTF-8: {exc}")
                raise _Unreadable from None  # ends the exchange: the rest is of no use
            except LineTooLong as exc:
                stream.fail(ErrorKind.MALFORMED, str(exc))
                raise _Unreadable from None
            stream.read(events, now_ns)

        sent = await self.exchange(self.endpoint.url, body, read, lambda: bool(stream.chunk_ns))
        if sent.status != 200:
            stream.fail(http_kind(sent.status),
                        status_message(sent, sent.error_body.decode("utf-8", "replace"),
                                       self._api_key))
        else:
            _close(parser, stream, sent.content_type)
        stream.end_ns = time.perf_counter_ns()
        await yield_to_other_reads()
        return sent.send_ns, sent.resent


class _Unreadable(Exception):
    """The stream cannot be read on (the reason is the stream's): the exchange ends."""


def _close(parser: SSEParser, stream: OpenAIStream, content_type: str) -> None:
    """The answer ended: the events left in the parser, then whether it was an event stream
    at all (a 200 whose body is JSON or a proxy's HTML page is not)."""
    try:
        stream.read(parser.close(), time.perf_counter_ns())
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # cut inside a multi-byte character
            stream.fail(ErrorKind.TRUNCATED, "stream ended inside a UTF-8 character")
        else:
            stream.fail(ErrorKind.MALFORMED, f"the stream is not valid UTF-8: {exc}")
    except LineTooLong as exc:
        stream.fail(ErrorKind.MALFORMED, str(exc))
    if not stream.events and stream.start.strip():
        kind = f" (Content-Type: {short(content_type)})" if content_type else ""
        stream.fail(ErrorKind.MALFORMED, f"a 200 answer that is not an event stream{kind}: "
                                         f"{short(stream.start.decode('utf-8', 'replace'))}")

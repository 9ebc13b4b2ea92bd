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
    transport_kind,
    yield_to_other_reads,
)
from pytest_llmperf.clients.reasoning import ReasoningSummary, ReasoningTracker
from pytest_llmperf.clients.sse import SSEEvent, SSEParser
from pytest_llmperf.results.errors import ErrorKind, http_kind
from pytest_llmperf.results.records import RequestRecord, TokenSource

__all__ = ["Endpoint", "StreamingClient", "build_payload"]

Api = Literal["chat", "completions"]


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
        path = "chat/completions" if self.api == "chat" else "completions"
        return f"{self.base_url.rstrip('/')}/{path}"


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
    if endpoint.ignore_eos:
        payload["ignore_eos"] = True
        if endpoint.min_tokens_field:
            payload[endpoint.min_tokens_field] = max_tokens
    return payload


class _Stream:
    """What one response stream has said so far."""

    def __init__(self) -> None:
        self.chunk_ns: list[int] = []
        self.text: list[str] = []
        self.kinds = ReasoningTracker()
        self.finish_reason: str | None = None
        self.usage: Mapping[str, Any] | None = None
        self.timings: Mapping[str, float] | None = None
        self.error: str | None = None
        self.error_kind: ErrorKind | None = None
        self.done = False
        self.end_ns = 0
        self.resent = False

    def fail(self, kind: ErrorKind, error: str) -> None:
        if self.error is None:  # the first failure is the cause; later ones follow from it
            self.error, self.error_kind = error, kind

    def take(self, data: str) -> bool:
        """Apply one SSE data payload; True when it carried generated text."""
        if data == "[DONE]":
            self.done = True
            return False
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            self.fail(ErrorKind.MALFORMED, f"malformed stream chunk: {short(data)}")
            return False
        if not isinstance(message, dict):
            self.fail(ErrorKind.MALFORMED, f"unexpected stream chunk: {short(data)}")
            return False
        if "error" in message:
            self.fail(ErrorKind.IN_BAND,
                      f"server error in stream: {short(json.dumps(message['error']))}")
            return False
        if message.get("usage"):
            if not _counts(message["usage"]):
                self.fail(ErrorKind.MALFORMED, f"malformed usage in stream: {short(data)}")
                return False
            self.usage = message["usage"]
        if message.get("timings"):
            self.timings = message["timings"]
        carried = False
        for choice in message.get("choices") or ():
            if self._generated(choice):
                carried = True
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return carried

    def read(self, events: list[SSEEvent], now_ns: int) -> None:
        """Apply the events of one network read: one reading if any of them carried text."""
        carried = [self.take(event.data) for event in events]  # all of them, in order
        if any(carried):
            self.chunk_ns.append(now_ns)
            self.kinds.end_read(now_ns)

    def _generated(self, choice: Mapping[str, Any]) -> bool:
        """Note the text a choice generated: chat delta content and reasoning (vLLM and SGLang
        name it ``reasoning_content`` or ``reasoning``), or completions text; True if any."""
        delta = choice.get("delta")
        if delta is not None:
            answer = delta.get("content") or ""
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        else:
            answer, reasoning = choice.get("text") or "", ""
        if not (answer or reasoning):
            return False
        self.text.append(answer + reasoning)  # all of it, for a tokenizer's output count
        if reasoning:
            self.kinds.reasoning(reasoning)
        if answer:
            self.kinds.content(answer)  # inline <think> tags where no parser took them out
        return True


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
        stream = _Stream()
        try:
            send_ns, stream.resent = await self._exchange(body, stream)
        except TimeoutError:
            stream.fail(ErrorKind.TIMEOUT, self.timeout_message(bool(stream.chunk_ns)))
        except ResendFailed as exc:
            send_ns = exc.first_send_ns
            stream.fail(ErrorKind.CONNECTION, str(exc))
        except TransportError as exc:
            stream.fail(transport_kind(exc, answered=bool(stream.chunk_ns)),
                        f"{type(exc).__name__}: {exc}")
        except UnicodeDecodeError:  # the stream ended inside a multi-byte character
            stream.fail(ErrorKind.TRUNCATED, "stream ended inside a UTF-8 character")
        return _record(request_id, prompt, prompt.max_tokens(self.max_tokens), send_ns, stream)

    async def _exchange(self, body: bytes, stream: _Stream) -> tuple[int, bool]:
        """POST ``body`` and read the answer into ``stream``; returns when it was sent and
        whether it was sent a second time."""
        parser = SSEParser()
        sent = await self.exchange(self.endpoint.url, body,
                                   lambda raw, now_ns: stream.read(parser.feed(raw), now_ns),
                                   lambda: bool(stream.chunk_ns))
        if sent.status != 200:
            stream.fail(http_kind(sent.status),
                        f"HTTP {sent.status}: {short(sent.error_body.decode('utf-8', 'replace'))}")
        else:
            stream.read(parser.close(), time.perf_counter_ns())
        stream.end_ns = time.perf_counter_ns()
        await yield_to_other_reads()
        return sent.send_ns, sent.resent


def _counts(usage: Any) -> bool:
    """A usage block whose token counts are whole numbers (or absent)."""
    return isinstance(usage, dict) and all(
        isinstance(usage.get(key, 0), int) or usage.get(key) is None
        for key in ("completion_tokens", "prompt_tokens"))


def _record(request_id: int, prompt: Prompt, max_tokens: int, send_ns: int,
            stream: _Stream) -> RequestRecord:
    error, error_kind = stream.error, stream.error_kind
    if error is None and not stream.done and stream.finish_reason is None:
        error, error_kind = ("stream ended before the server finished the answer",
                             ErrorKind.TRUNCATED)
    usage = stream.usage or {}
    output_tokens, output_source, output_text = 0, None, None
    if "completion_tokens" in usage:
        output_tokens, output_source = int(usage["completion_tokens"] or 0), TokenSource.USAGE
    elif error is None and stream.chunk_ns:
        output_text = "".join(stream.text)  # counted by the tokenizer after the window
    kinds = stream.kinds.finish()
    reasoning_tokens, reasoning_source, reasoning_text = _reasoning_count(usage, kinds)
    input_tokens, input_source, prompt_text = None, None, None
    if usage.get("prompt_tokens") is not None:
        input_tokens, input_source = int(usage["prompt_tokens"]), TokenSource.USAGE
    elif error is None:
        prompt_text = prompt.text
    return RequestRecord(
        request_id=request_id,
        send_ns=send_ns,
        chunk_ns=tuple(stream.chunk_ns),
        end_ns=stream.end_ns or time.perf_counter_ns(),
        output_tokens=output_tokens,
        output_token_source=output_source,
        input_tokens=input_tokens,
        input_token_source=input_source,
        finish_reason=stream.finish_reason,
        error=error,
        error_kind=None if error_kind is None else error_kind.value,
        server_timings=dict(stream.timings or {}),
        output_text=output_text,
        prompt_text=prompt_text,
        prompt_history=prompt.history if prompt_text is not None else (),
        resent=stream.resent,
        max_tokens=max_tokens,
        cached_tokens=cached_tokens(usage, stream.timings or {}),
        dataset_input_tokens=prompt.input_tokens,
        reasoning_chunks=kinds.reasoning_chunks,
        answer_start_ns=kinds.answer_start_ns,
        answer_end_ns=kinds.answer_end_ns,
        reasoning_tokens=reasoning_tokens,
        reasoning_token_source=reasoning_source,
        reasoning_text=reasoning_text if error is None else None,
    )


def _reasoning_count(usage: Mapping[str, Any], kinds: ReasoningSummary
                     ) -> tuple[int | None, TokenSource | None, str | None]:
    """Reasoning tokens, their source and the text still to count: the server's
    ``completion_tokens_details.reasoning_tokens`` where it says, else the tokenizer's after
    the window.  A zero from a server whose stream did reason is a server that does not
    count them, not a count."""
    details = usage.get("completion_tokens_details")
    told = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
    reasoned = kinds.reasoning_chunks > 0
    if isinstance(told, int) and not isinstance(told, bool) and (told or not reasoned):
        return told, TokenSource.USAGE, None
    if reasoned:
        return None, None, kinds.reasoning_text
    return 0, None, None


def cached_tokens(usage: Mapping[str, Any], timings: Mapping[str, Any]) -> int | None:
    """Prompt tokens the server answered from its prefix cache, where it says: OpenAI's
    ``usage.prompt_tokens_details.cached_tokens`` (vLLM, SGLang) or llama.cpp's
    ``timings.cache_n``; None when it does not."""
    details = usage.get("prompt_tokens_details")
    if isinstance(details, Mapping) and isinstance(details.get("cached_tokens"), int):
        return int(details["cached_tokens"])
    cache_n = timings.get("cache_n")
    if isinstance(cache_n, (int, float)) and not isinstance(cache_n, bool):
        return int(cache_n)
    return None

"""Async streaming client for Ollama's native chat API (``POST /api/chat``, NDJSON stream).

Ollama streams one JSON object per line; the last one (``"done": true``) carries the server's
own counts and durations (nanoseconds), which are exact, so output tokens come from its
``eval_count`` and no tokenizer is needed.  As in :class:`~.openai.StreamingClient`,
there is one ``perf_counter_ns`` reading per network read that completed a line carrying
generated text (``message.content`` or, for reasoning models, ``message.thinking``), and every
failure becomes the record's ``error``, never an exception.  Which reads carried thinking and
which the answer is noted too (content goes through the inline ``<think>`` splitter as well,
for models Ollama has no thinking support for); Ollama counts no reasoning tokens, so the
thinking's text is kept for the tokenizer to count after the window.

Ollama has no ``ignore_eos``/``min_tokens``: ``num_predict`` only caps the answer.  The record's
``finish_reason`` is Ollama's ``done_reason``: ``"length"`` when the cap ended the answer,
``"stop"`` when the model ended it early.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from pytest_llmperf.clients import sse
from pytest_llmperf.clients.base import Prompt, as_prompt
from pytest_llmperf.clients.base import short as _short
from pytest_llmperf.clients.http import (
    HttpClient,
    ResendFailed,
    TransportError,
    status_message,
    transport_kind,
    yield_to_other_reads,
)
from pytest_llmperf.clients.openai_stream import MAX_COUNT
from pytest_llmperf.clients.reasoning import ReasoningTracker
from pytest_llmperf.results.errors import ErrorKind, http_kind
from pytest_llmperf.results.records import RequestRecord, TokenSource

__all__ = ["NDJSONLines", "OllamaClient", "build_chat_payload", "server_timings"]

_NS_PER_MS = 1e6


def build_chat_payload(model: str, prompt: Prompt | str, max_tokens: int) -> dict[str, Any]:
    """The ``/api/chat`` body; a prompt with its own answer length overrides ``max_tokens``."""
    prompt = as_prompt(prompt)
    return {
        "model": model,
        "messages": prompt.messages(),
        "stream": True,
        "options": {"num_predict": prompt.max_tokens(max_tokens)},
    }


class NDJSONLines:
    """Cuts a byte stream into complete lines; a network read may end anywhere, even inside
    a multi-byte character, so bytes are kept until their line's newline arrives: as the reads
    that brought them, joined once when the line ends (linear time however the network cut
    it), and no more than ``max_line`` of them (:class:`~.sse.LineTooLong`)."""

    def __init__(self, max_line: int | None = None) -> None:
        self._max = sse.MAX_LINE_BYTES if max_line is None else max_line
        self._pending: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            self._hold(data)
            return []
        if self._pending:
            data = b"".join((*self._pending, data))
            self._pending, self._size = [], 0
        *lines, rest = data.split(b"\n")
        if any(len(line) > self._max for line in lines):
            raise sse.LineTooLong(self._max)
        self._hold(rest)
        return [line for line in lines if line.strip()]

    def close(self) -> bytes:
        """What is left without a newline at the end of the stream."""
        rest = b"".join(self._pending)
        self._pending, self._size = [], 0
        return rest

    def _hold(self, part: bytes) -> None:
        if part:
            self._pending.append(part)
            self._size += len(part)
            if self._size > self._max:
                raise sse.LineTooLong(self._max)


def server_timings(final: Mapping[str, Any]) -> dict[str, float]:
    """The final object's figures in llama.cpp's ``timings`` names, so that the server's
    ``predicted_per_token_ms`` compares with our TPOT."""
    timings: dict[str, float] = {}
    for key, name, scale in (
        ("eval_count", "predicted_n", 1.0),
        ("eval_duration", "predicted_ms", _NS_PER_MS),
        # prompt_eval_count includes prompt tokens served from the cache while the duration
        # covers only those evaluated, so no per-token prompt figure is derived from them.
        ("prompt_eval_count", "prompt_tokens", 1.0),
        ("prompt_eval_duration", "prompt_ms", _NS_PER_MS),
        ("load_duration", "load_ms", _NS_PER_MS),
        ("total_duration", "total_ms", _NS_PER_MS),
    ):
        value = final.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (isinstance(value, int) and abs(value) >= 2**63):  # absurd, overflows floats
            continue
        if math.isfinite(value / scale):  # strict JSON carries no NaN nor infinity
            timings[name] = value / scale
    count, ms = timings.get("predicted_n"), timings.get("predicted_ms")
    if count and ms:
        timings["predicted_per_token_ms"] = ms / count
        timings["predicted_per_second"] = count / ms * 1e3
    return timings


class _Answer:
    """What one NDJSON answer has said so far."""

    def __init__(self) -> None:
        self.chunk_ns: list[int] = []
        self.kinds = ReasoningTracker()
        self.final: Mapping[str, Any] | None = None  # the "done": true object
        self.error: str | None = None
        self.error_kind: ErrorKind | None = None
        self.end_ns = 0
        self.resent = False

    def fail(self, kind: ErrorKind, error: str) -> None:
        if self.error is None:  # the first failure is the cause; later ones follow from it
            self.error, self.error_kind = error, kind

    def take(self, line: bytes) -> bool:
        """Apply one complete line; True when it carried generated text."""
        if self.error is not None or self.final is not None:
            return False
        try:
            message = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            self.fail(ErrorKind.MALFORMED, "stream line is not valid UTF-8")
            return False
        except (ValueError, RecursionError):  # RecursionError: nested too deep to read
            self.fail(ErrorKind.MALFORMED, f"malformed stream line: {_short(line.decode('utf-8'))}")
            return False
        if not isinstance(message, dict):
            self.fail(ErrorKind.MALFORMED, f"unexpected stream line: {_short(json.dumps(message))}")
            return False
        if "error" in message:
            self.fail(ErrorKind.IN_BAND, f"server error in stream: {_short(str(message['error']))}")
            return False
        if message.get("done"):
            counts = (message.get("eval_count"), message.get("prompt_eval_count"))
            reason = message.get("done_reason")
            if any(c is not None and (type(c) is not int or not 0 <= c <= MAX_COUNT)
                   for c in counts) \
                    or not isinstance(reason, (str, type(None))):  # record() takes them as are
                self.fail(ErrorKind.MALFORMED,
                          f"malformed final stream line: {_short(line.decode('utf-8'))}")
                return False
            self.final = message
        said = message.get("message")
        if not isinstance(said, dict):
            return False
        thinking, answer = said.get("thinking"), said.get("content")
        carried = False
        if isinstance(thinking, str) and thinking:
            self.kinds.reasoning(thinking)
            carried = True
        if isinstance(answer, str) and answer:
            self.kinds.content(answer)
            carried = True
        return carried

    def read(self, lines: list[bytes], now_ns: int) -> None:
        """Apply the lines one network read completed: one reading if any carried text."""
        carried = [self.take(line) for line in lines]  # all of them, in order
        if any(carried):
            self.chunk_ns.append(now_ns)
            self.kinds.end_read(now_ns)

    def close(self, rest: bytes, now_ns: int) -> None:
        """The stream ended; ``rest`` is what came after the last newline (nothing after the
        final line is the answer's, as :meth:`take` ignores the whole lines after it)."""
        if rest.strip() and self.final is None:
            try:
                text = rest.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.reason == "unexpected end of data":  # cut inside a character
                    self.fail(ErrorKind.TRUNCATED, "stream ended inside a UTF-8 character")
                else:
                    self.fail(ErrorKind.MALFORMED, "stream line is not valid UTF-8")
            else:
                try:
                    json.loads(text)
                except (ValueError, RecursionError):
                    self.fail(ErrorKind.TRUNCATED,
                              f"stream ended in the middle of a line: {_short(text)}")
                else:  # a whole object without its newline: still the server's word
                    self.read([rest], now_ns)
        if self.final is None:
            self.fail(ErrorKind.TRUNCATED, "stream ended before the server finished the answer")
        self.end_ns = time.perf_counter_ns()

    def record(self, request_id: int, send_ns: int) -> RequestRecord:
        final = self.final or {}
        output_tokens, output_source = 0, None
        input_tokens, input_source = None, None
        if self.final is not None:
            # Ollama leaves zero counts out of the JSON (omitempty), so absent means 0.
            output_tokens, output_source = int(final.get("eval_count") or 0), TokenSource.USAGE
            if final.get("prompt_eval_count") is not None:
                input_tokens = int(final["prompt_eval_count"])
                input_source = TokenSource.USAGE
        kinds = self.kinds.finish()
        reasoned = kinds.reasoning_chunks > 0
        return RequestRecord(
            request_id=request_id,
            send_ns=send_ns,
            chunk_ns=tuple(self.chunk_ns),
            end_ns=self.end_ns or time.perf_counter_ns(),
            output_tokens=output_tokens,
            output_token_source=output_source,
            input_tokens=input_tokens,
            input_token_source=input_source,
            finish_reason=final.get("done_reason") or None,
            error=self.error,
            error_kind=None if self.error_kind is None else self.error_kind.value,
            server_timings=server_timings(final),
            resent=self.resent,
            reasoning_chunks=kinds.reasoning_chunks,
            answer_start_ns=kinds.answer_start_ns,
            answer_end_ns=kinds.answer_end_ns,
            # eval_count includes the thinking, but no count of it alone: the tokenizer's.
            reasoning_tokens=None if reasoned else 0,
            reasoning_text=kinds.reasoning_text if reasoned and self.error is None else None,
        )


class OllamaClient(HttpClient):
    """Sends streaming ``/api/chat`` requests to one Ollama server; use as ``async with``."""

    def __init__(
        self,
        root: str,
        model: str,
        *,
        max_tokens: int,
        timeout_s: float = 600.0,
        api_key: str | None = None,  # Ollama itself has no auth; a proxy in front of it may
        first_token_timeout_s: float | None = None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, api_key=api_key,
                         first_token_timeout_s=first_token_timeout_s)
        self.url = f"{root.rstrip('/')}/api/chat"
        self.model = model
        self.max_tokens = max_tokens

    async def send(self, request_id: int, prompt: Prompt | str) -> RequestRecord:
        """Send one request and stream its answer to the end; errors become the record's."""
        prompt = as_prompt(prompt)
        body = json.dumps(build_chat_payload(self.model, prompt, self.max_tokens)).encode()
        answer = _Answer()
        send_ns = time.perf_counter_ns()
        try:
            send_ns, answer.resent = await self._exchange(body, answer)
        except TimeoutError:
            answer.fail(ErrorKind.TIMEOUT, self.timeout_message(bool(answer.chunk_ns)))
        except _Unreadable:  # the answer has its failure
            answer.end_ns = time.perf_counter_ns()
        except ResendFailed as exc:
            send_ns = exc.first_send_ns
            answer.fail(transport_kind(exc, answered=False), str(exc))
        except TransportError as exc:
            answer.fail(transport_kind(exc, answered=bool(answer.chunk_ns)),
                        f"{type(exc).__name__}: {exc}")
        return dataclasses.replace(answer.record(request_id, send_ns),
                                   max_tokens=prompt.max_tokens(self.max_tokens),
                                   dataset_input_tokens=prompt.input_tokens)

    async def _exchange(self, body: bytes, answer: _Answer) -> tuple[int, bool]:
        """POST ``body`` and read the answer into ``answer``; returns when it was sent and
        whether it was sent a second time."""
        lines = NDJSONLines()

        def read(raw: bytes, now_ns: int) -> None:
            if answer.final is not None:  # what comes after the final line is not read
                return
            try:
                complete = lines.feed(raw)
            except sse.LineTooLong as exc:
                answer.fail(ErrorKind.MALFORMED, str(exc))
                raise _Unreadable from None  # ends the exchange: the rest is of no use
            answer.read(complete, now_ns)

        sent = await self.exchange(self.url, body, read, lambda: bool(answer.chunk_ns))
        if sent.status != 200:
            answer.fail(http_kind(sent.status),
                        status_message(sent, _error_text(sent.error_body), self._api_key))
            answer.end_ns = time.perf_counter_ns()
        else:
            answer.close(lines.close(), time.perf_counter_ns())
        await yield_to_other_reads()
        return sent.send_ns, sent.resent


class _Unreadable(Exception):
    """The stream cannot be read on (the reason is the answer's): the exchange ends."""


def _error_text(body: bytes) -> str:
    """Ollama answers errors as ``{"error": "..."}``; anything else is shown as it came."""
    text = body.decode("utf-8", errors="replace")
    try:
        message = json.loads(text)
    except ValueError:
        return _short(text)
    if isinstance(message, dict) and isinstance(message.get("error"), str):
        return _short(message["error"])
    return _short(text)

"""What one OpenAI-style response stream said, event by event, and the record it makes.

A server can send anything, so every chunk is checked for the shape it must have before any of
it is used: JSON that is an object, ``choices`` a list of objects, ``delta`` an object, text a
string (or a list of ``{"type": "text", "text": ...}`` parts, which some servers send),
``finish_reason`` a string, token counts whole numbers, ``timings`` an object of numbers.  A
chunk of another shape fails its request as ``malformed``, with the chunk in the message; it
never raises into the load, where it would stop every other user's requests.
"""

from __future__ import annotations

import json
import json.scanner
import math
import time
from collections.abc import Mapping
from typing import Any

from pytest_llmperf.clients.base import Prompt, short
from pytest_llmperf.clients.reasoning import ReasoningSummary, ReasoningTracker
from pytest_llmperf.clients.sse import SSEEvent
from pytest_llmperf.clients.structured import ToolCall, schema_problem, tool_call_problem
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.records import RequestRecord, TokenSource

__all__ = ["MAX_COUNT", "OpenAIStream", "cached_tokens", "stream_record"]

_START_KEPT = 300  # of the body, for the message when it is no event stream


class OpenAIStream:
    """What one response stream has said so far."""

    def __init__(self, *, keep_answer: bool = False) -> None:
        self.chunk_ns: list[int] = []
        self.text: list[str] = []
        # The answer's own text (no reasoning), kept for structured output's check.
        self.answer: list[str] | None = [] if keep_answer else None
        self.calls: dict[int, ToolCall] = {}  # tool calls by index, as they were streamed
        self.kinds = ReasoningTracker()
        self.finish_reason: str | None = None
        self.usage: Mapping[str, Any] | None = None
        self.timings: dict[str, float] | None = None
        self.error: str | None = None
        self.error_kind: ErrorKind | None = None
        self.done = False
        self.events = 0  # SSE events read, of any content
        self.start = b""  # the body's first bytes, as they came
        self.end_ns = 0
        self.resent = False

    def fail(self, kind: ErrorKind, error: str) -> None:
        if self.error is None:  # the first failure is the cause; later ones follow from it
            self.error, self.error_kind = error, kind

    def keep_start(self, raw: bytes) -> None:
        if len(self.start) < _START_KEPT:
            self.start += raw[: _START_KEPT - len(self.start)]

    def take(self, data: str) -> bool:
        """Apply one SSE data payload; True when it carried generated text.  Nothing after
        ``[DONE]`` is (the parser stops there too)."""
        self.events += 1
        if self.done:
            return False
        if data == "[DONE]":
            self.done = True
            return False
        try:
            message = _loads(data)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            self.fail(ErrorKind.MALFORMED, f"malformed stream chunk: {short(data)}")
            return False
        if not isinstance(message, dict):
            return self._odd(data)
        if "error" in message:
            self.fail(ErrorKind.IN_BAND,
                      f"server error in stream: {short(json.dumps(message['error']))}")
            return False
        if message.get("usage"):
            if not _counts(message["usage"]):
                self.fail(ErrorKind.MALFORMED, f"malformed usage in stream: {short(data)}")
                return False
            self.usage = message["usage"]
        timings = message.get("timings")
        if timings:
            if not isinstance(timings, dict):
                return self._odd(data)
            self.timings = {k: v for k, v in timings.items() if _finite(v)}
        choices = message.get("choices")
        if not choices:
            return False
        if type(choices) is not list:
            return self._odd(data)
        if len(choices) == 1:  # the usual chunk: one choice
            one = _choice(choices[0])
            if one is None:
                return self._odd(data)
            answer, reasoning, finish, calls = one
            if finish:
                self.finish_reason = finish
            if calls:
                return self._called(calls) | self._generated(answer, reasoning)
            if reasoning or not answer:
                return self._generated(answer, reasoning)
            self.text.append(answer)  # the usual token: answer text alone (_generated's path)
            self.kinds.content(answer)
            if self.answer is not None:
                self.answer.append(answer)
            return True
        said = [_choice(choice) for choice in choices]
        if any(one is None for one in said):  # checked whole before any of it is used
            return self._odd(data)
        carried = False
        for answer, reasoning, finish, calls in (one for one in said if one is not None):
            carried = self._generated(answer, reasoning) or carried
            if calls:
                carried = self._called(calls) or carried
            if finish:
                self.finish_reason = finish
        return carried

    def read(self, events: list[SSEEvent], now_ns: int) -> None:
        """Apply the events of one network read: one reading if any of them carried text."""
        carried = False
        try:
            for event in events:  # all of them, in order
                if self.take(event.data):
                    carried = True
        except Exception as exc:  # a shape no rule above foresaw: still this request's only
            self.fail(ErrorKind.MALFORMED,
                      f"unreadable stream chunk ({type(exc).__name__}: {short(str(exc))})")
            return
        if carried:
            self.chunk_ns.append(now_ns)
            self.kinds.end_read(now_ns)

    def _odd(self, data: str) -> bool:
        self.fail(ErrorKind.MALFORMED, f"unexpected stream chunk: {short(data)}")
        return False

    def _called(self, calls: list[tuple[int, str, str]]) -> bool:
        """Note the pieces of tool calls a delta carried (index, name, arguments); True if
        any was generated text.  A call's name comes with its first piece; its arguments come
        piece by piece, generated tokens like an answer's."""
        carried = False
        for index, name, arguments in calls:
            call = self.calls.setdefault(index, ToolCall())
            if name and not call.name:
                call.name = name
            if arguments:
                call.arguments.append(arguments)
            if name or arguments:
                self.text.append(name + arguments)  # for a tokenizer's output count
                self.kinds.content(name + arguments)
                carried = True
        return carried

    def _generated(self, answer: str, reasoning: str) -> bool:
        """Note the text a choice generated: chat delta content and reasoning (vLLM and SGLang
        name it ``reasoning_content`` or ``reasoning``), or completions text; True if any."""
        if not (answer or reasoning):
            return False
        self.text.append(answer + reasoning)  # all of it, for a tokenizer's output count
        if reasoning:
            self.kinds.reasoning(reasoning)
        if answer:
            self.kinds.content(answer)  # inline <think> tags where no parser took them out
            if self.answer is not None:
                self.answer.append(answer)
        return True


# json.loads's own (C) scanner; typeshed types its argument as a scanner, not the decoder.
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _loads(data: str) -> Any:
    """``json.loads(data)``; a payload that is bare JSON (every server's chunk) skips the
    wrapper and its two whitespace matches, which cost more than the scan itself."""
    try:
        value, end = _scan(data, 0)
    except StopIteration:  # nothing JSON at the start (whitespace first?): the full rule says
        return json.loads(data)
    return value if end == len(data) else json.loads(data)  # after it: whitespace, or junk


Calls = list[tuple[int, str, str]]  # a delta's tool-call pieces: index, name, arguments


def _choice(choice: object) -> tuple[str, str, str | None, Calls | None] | None:
    """A choice's answer text, reasoning text, finish_reason and tool-call pieces; None when
    it has a shape no server should send."""
    if type(choice) is not dict:
        return None
    finish = choice.get("finish_reason")
    if finish is not None and type(finish) is not str:
        return None
    delta = choice.get("delta")
    if delta is None:  # text completions
        answer = _text(choice.get("text"))
        return None if answer is None else (answer, "", finish or None, None)
    if type(delta) is not dict:
        return None
    content = delta.get("content")
    if type(content) is str and len(delta) == 1:  # the usual delta: its text alone
        return content, "", finish or None, None
    answer = content if type(content) is str else _text(content)
    # vLLM and SGLang name it reasoning_content, vLLM's newer releases reasoning.
    thought = delta.get("reasoning_content") or delta.get("reasoning")
    reasoning = thought if type(thought) is str else _text(thought)
    calls = _calls(delta.get("tool_calls"))
    if answer is None or reasoning is None or calls is None:
        return None
    return answer, reasoning, finish or None, calls


def _calls(value: object) -> Calls | None:
    """The tool-call pieces of a delta's ``tool_calls`` (absent: none); None for a shape no
    server should send.  A piece without an index is the call at its place in the list."""
    if value is None:
        return []
    if type(value) is not list:
        return None
    pieces: Calls = []
    for place, call in enumerate(value):
        if type(call) is not dict:
            return None
        index = call.get("index", place)
        function = call.get("function") or {}
        if not _whole(index) or type(function) is not dict:
            return None
        name, arguments = function.get("name") or "", function.get("arguments") or ""
        if type(name) is not str or type(arguments) is not str:
            return None
        pieces.append((index, name, arguments))
    return pieces


def _text(value: object) -> str | None:
    """Text as a string, or as a list of ``{"type": "text", "text": ...}`` parts; absent is
    empty; None for anything else."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if type(value) is list and all(
            type(part) is dict and part.get("type") == "text"
            and type(part.get("text")) is str for part in value):
        return "".join(part["text"] for part in value)
    return None


# More tokens than any answer has; a larger "count" would overflow the metrics' floats.
MAX_COUNT = 2**31 - 1


def _whole(value: object) -> bool:
    """A token count: a whole number, not negative, not absurd (bool is no number here)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _finite(value: object) -> bool:
    """A number strict JSON can carry (no NaN, no infinity, no bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) if isinstance(value, float) else abs(value) < 2**63


def _counts(usage: Any) -> bool:
    """A usage block whose token counts are whole numbers (or absent)."""
    return isinstance(usage, dict) and all(
        usage.get(key) is None or _whole(usage.get(key))
        for key in ("completion_tokens", "prompt_tokens"))


def stream_record(request_id: int, prompt: Prompt, max_tokens: int, send_ns: int,
                  stream: OpenAIStream) -> RequestRecord:
    error, error_kind = stream.error, stream.error_kind
    if error is None and not stream.done and stream.finish_reason is None:
        error, error_kind = ("stream ended before the server finished the answer",
                             ErrorKind.TRUNCATED)
    if error is None and prompt.json_schema is not None:
        problem = schema_problem("".join(stream.answer or ()), prompt.json_schema)
        if problem is not None:
            error, error_kind = problem, ErrorKind.INVALID_OUTPUT
    if error is None and prompt.tools:
        problem = tool_call_problem(stream.calls, prompt.tools, "".join(stream.text))
        if problem is not None:
            error, error_kind = problem, ErrorKind.INVALID_OUTPUT
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
    elif error is None and not prompt.images:  # the tokenizer cannot count an image's tokens
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
        schema_checked=prompt.checked,
        image_size=prompt.image_size,
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
    if _whole(told) and (told or not reasoned):
        assert isinstance(told, int)
        return told, TokenSource.USAGE, None
    if reasoned:
        return None, None, kinds.reasoning_text
    return 0, None, None


def cached_tokens(usage: Mapping[str, Any], timings: Mapping[str, Any]) -> int | None:
    """Prompt tokens the server answered from its prefix cache, where it says: OpenAI's
    ``usage.prompt_tokens_details.cached_tokens`` (vLLM, SGLang) or llama.cpp's
    ``timings.cache_n``; None when it does not."""
    details = usage.get("prompt_tokens_details")
    if isinstance(details, Mapping) and _whole(details.get("cached_tokens")):
        return int(details["cached_tokens"])
    cache_n = timings.get("cache_n")
    if isinstance(cache_n, (int, float)) and _finite(cache_n) and 0 <= cache_n <= MAX_COUNT:
        return int(cache_n)
    return None

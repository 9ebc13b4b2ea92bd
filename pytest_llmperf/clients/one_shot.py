"""Requests answered at once, with no stream: embeddings and rerank.

A request sends one body and reads one JSON answer: its record has no chunk (no TTFT, no TPOT),
its latency runs from the send to the answer's last byte (``e2el_ms``), ``embedded_inputs``
counts the inputs the answer covered (vectors, scored documents) and ``input_tokens`` is the
server's usage.  An answer that is not JSON or does not cover every input fails as
``malformed``.  Each endpoint says what it sends and how its answer is read
(clients.embeddings, clients.rerank).
"""

from __future__ import annotations

import json
import time
from typing import Any

from pytest_llmperf.clients.base import Prompt, as_prompt, short
from pytest_llmperf.clients.http import (
    ResendFailed,
    TransportError,
    status_message,
    transport_kind,
    yield_to_other_reads,
)
from pytest_llmperf.clients.openai import StreamingClient
from pytest_llmperf.results.errors import ErrorKind, http_kind
from pytest_llmperf.results.records import RequestRecord, TokenSource

__all__ = ["MAX_ANSWER_BYTES", "OneShotClient", "json_answer", "usage_tokens"]

# An answer larger than this is no batch of vectors a test asks for (8 inputs x 8192
# dimensions as JSON floats is about 1.5 MB).
MAX_ANSWER_BYTES = 256 * 1024 * 1024


class OneShotClient(StreamingClient):
    """Sends one kind of unstreamed request to one endpoint; use as ``async with``."""

    def payload(self, prompt: Prompt) -> dict[str, Any]:
        """The request's body."""
        raise NotImplementedError

    def inputs(self, prompt: Prompt) -> int:
        """How many inputs the answer must cover."""
        raise NotImplementedError

    def read_answer(self, raw: bytes, inputs: int) -> tuple[int | None, str | None]:
        """(the server's prompt tokens or None, None) of a good answer, or (None, why it is
        not one)."""
        raise NotImplementedError

    async def send(self, request_id: int, prompt: Prompt | str) -> RequestRecord:
        prompt = as_prompt(prompt)
        inputs = self.inputs(prompt)
        body = json.dumps({**self.endpoint.extra_body, **self.payload(prompt)}).encode()
        answer = bytearray()
        send_ns = time.perf_counter_ns()
        resent = False
        error: tuple[ErrorKind, str] | None = None

        def read(raw: bytes, now_ns: int) -> None:
            if len(answer) + len(raw) > MAX_ANSWER_BYTES:
                raise _TooLarge
            answer.extend(raw)

        try:
            sent = await self.exchange(self.endpoint.url, body, read, lambda: False)
            send_ns, resent = sent.send_ns, sent.resent
            if sent.status != 200:
                error = http_kind(sent.status), status_message(
                    sent, sent.error_body.decode("utf-8", "replace"), self._api_key)
        except TimeoutError:
            error = ErrorKind.TIMEOUT, self.timeout_message(False)
        except _TooLarge:
            error = ErrorKind.MALFORMED, f"the answer is larger than {MAX_ANSWER_BYTES} bytes"
        except ResendFailed as exc:
            send_ns = exc.first_send_ns
            error = transport_kind(exc, answered=False), str(exc)
        except TransportError as exc:
            error = transport_kind(exc, answered=False), f"{type(exc).__name__}: {exc}"
        end_ns = time.perf_counter_ns()
        await yield_to_other_reads()
        prompt_tokens = None
        if error is None:
            prompt_tokens, problem = self.read_answer(bytes(answer), inputs)
            if problem is not None:
                error = ErrorKind.MALFORMED, problem
        return RequestRecord(
            request_id=request_id, send_ns=send_ns, end_ns=end_ns,
            input_tokens=prompt_tokens,
            input_token_source=TokenSource.USAGE if prompt_tokens is not None else None,
            error=None if error is None else error[1],
            error_kind=None if error is None else error[0].value,
            resent=resent, max_tokens=None, dataset_input_tokens=prompt.input_tokens,
            embedded_inputs=inputs if error is None else 0)


class _TooLarge(Exception):
    """The answer passed MAX_ANSWER_BYTES: reading on is of no use."""


def json_answer(raw: bytes) -> tuple[Any, str | None]:
    """(the decoded answer, None) or (None, why it is not JSON, with its start)."""
    try:
        return json.loads(raw), None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        start = short(raw[:300].decode("utf-8", "replace"))
        return None, f"the answer is not JSON ({exc}): {start}"


def usage_tokens(answer: Any, *names: str) -> int | None:
    """The first of ``names`` in the answer's ``usage`` that is a whole number of tokens."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    for name in names:
        tokens = usage.get(name) if isinstance(usage, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0:
            return tokens
    return None

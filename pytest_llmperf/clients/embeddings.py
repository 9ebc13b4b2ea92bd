"""Client for the OpenAI embeddings endpoint (``POST /v1/embeddings``; vLLM, SGLang, TEI and
llama.cpp started with ``--embeddings`` serve it).

One request embeds a batch of inputs (the prompt's text and its ``batch``) and answers once,
with no stream: its record has no chunk (no TTFT, no TPOT), its latency is from the send to the
last byte of the answer (``e2el_ms``), ``embedded_inputs`` counts the vectors that came back and
``input_tokens`` is the server's ``usage.prompt_tokens``.  An answer that is not JSON, holds no
vector or a different number of vectors than inputs fails as ``malformed``.
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

__all__ = ["MAX_ANSWER_BYTES", "EmbeddingsClient", "embeddings_payload"]

# An answer larger than this is no batch of vectors a test asks for (8 inputs x 8192
# dimensions as JSON floats is about 1.5 MB).
MAX_ANSWER_BYTES = 256 * 1024 * 1024


def embeddings_payload(model: str, prompt: Prompt) -> dict[str, Any]:
    return {"model": model, "input": [prompt.text, *prompt.batch], "encoding_format": "float"}


class EmbeddingsClient(StreamingClient):
    """Sends embeddings requests to one endpoint; use as ``async with``."""

    async def send(self, request_id: int, prompt: Prompt | str) -> RequestRecord:
        prompt = as_prompt(prompt)
        inputs = 1 + len(prompt.batch)
        payload = embeddings_payload(self.endpoint.model, prompt)
        body = json.dumps({**self.endpoint.extra_body, **payload}).encode()
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
            prompt_tokens, problem = _read_answer(bytes(answer), inputs)
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


def _read_answer(raw: bytes, inputs: int) -> tuple[int | None, str | None]:
    """(usage.prompt_tokens, None) of a good answer, or (None, why it is not one)."""
    start = short(raw[:300].decode("utf-8", "replace"))
    try:
        answer = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"the answer is not JSON ({exc}): {start}"
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        return None, f"the answer holds no 'data' list: {start}"
    vectors = [d.get("embedding") for d in data if isinstance(d, dict)]
    if len(vectors) != inputs or not all(isinstance(v, list) and v for v in vectors):
        return None, (f"the answer holds {len(vectors)} vector(s) for {inputs} input(s)"
                      if len(vectors) != inputs else "an embedding in the answer is empty")
    usage = answer.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return (int(tokens) if isinstance(tokens, int) and tokens >= 0 else None), None

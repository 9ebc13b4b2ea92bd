"""Client for the OpenAI embeddings endpoint (``POST /v1/embeddings``; vLLM, SGLang, TEI and
llama.cpp started with ``--embeddings`` serve it).

One request embeds a batch of inputs (the prompt's text and its ``batch``) and answers once
(clients.one_shot): ``embedded_inputs`` counts the vectors that came back and ``input_tokens``
is the server's ``usage.prompt_tokens``.  An answer that is not JSON, holds no vector or a
different number of vectors than inputs fails as ``malformed``.
"""

from __future__ import annotations

from typing import Any

from pytest_llmperf.clients.base import Prompt, short
from pytest_llmperf.clients.one_shot import (
    MAX_ANSWER_BYTES,
    OneShotClient,
    json_answer,
    usage_tokens,
)

__all__ = ["MAX_ANSWER_BYTES", "EmbeddingsClient", "embeddings_payload"]


def embeddings_payload(model: str, prompt: Prompt) -> dict[str, Any]:
    return {"model": model, "input": [prompt.text, *prompt.batch], "encoding_format": "float"}


class EmbeddingsClient(OneShotClient):
    """Sends embeddings requests to one endpoint; use as ``async with``."""

    def payload(self, prompt: Prompt) -> dict[str, Any]:
        return embeddings_payload(self.endpoint.model, prompt)

    def inputs(self, prompt: Prompt) -> int:
        return 1 + len(prompt.batch)

    def read_answer(self, raw: bytes, inputs: int) -> tuple[int | None, str | None]:
        answer, problem = json_answer(raw)
        if problem is not None:
            return None, problem
        start = short(raw[:300].decode("utf-8", "replace"))
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            return None, f"the answer holds no 'data' list: {start}"
        vectors = [d.get("embedding") for d in data if isinstance(d, dict)]
        if len(vectors) != inputs:
            return None, f"the answer holds {len(vectors)} vector(s) for {inputs} input(s)"
        if not all(isinstance(v, list) and v for v in vectors):
            return None, "an embedding in the answer is empty"
        return usage_tokens(answer, "prompt_tokens"), None

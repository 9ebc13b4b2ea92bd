"""Client for the rerank endpoint (``POST /v1/rerank``, as vLLM, llama.cpp started with
``--reranking``, Jina and TEI's OpenAI-style router serve it).

One request scores a batch of documents against one query (the prompt's text is the query,
its ``batch`` the documents) and answers once (clients.one_shot): ``results`` holds an
``index`` and a ``relevance_score`` for each document.  ``embedded_inputs`` counts the documents
scored, ``input_tokens`` is the server's ``usage.prompt_tokens`` (else ``total_tokens``).  An
answer that is not JSON, lacks a document, scores one twice, names an index out of range or
gives a score that is not a number fails as ``malformed``.
"""

from __future__ import annotations

import math
from typing import Any

from pytest_llmperf.clients.base import Prompt, short
from pytest_llmperf.clients.one_shot import OneShotClient, json_answer, usage_tokens

__all__ = ["RerankClient", "rerank_payload"]


def rerank_payload(model: str, prompt: Prompt) -> dict[str, Any]:
    if not prompt.batch:
        raise ValueError("a rerank request scores at least one document: the prompt has none "
                         "(its batch is empty)")
    return {"model": model, "query": prompt.text, "documents": list(prompt.batch),
            "top_n": len(prompt.batch)}


class RerankClient(OneShotClient):
    """Sends rerank requests to one endpoint; use as ``async with``."""

    def payload(self, prompt: Prompt) -> dict[str, Any]:
        return rerank_payload(self.endpoint.model, prompt)

    def inputs(self, prompt: Prompt) -> int:
        return len(prompt.batch)

    def read_answer(self, raw: bytes, inputs: int) -> tuple[int | None, str | None]:
        answer, problem = json_answer(raw)
        if problem is not None:
            return None, problem
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            start = short(raw[:300].decode("utf-8", "replace"))
            return None, f"the answer holds no 'results' list: {start}"
        seen: set[int] = set()
        for result in results:
            index = result.get("index") if isinstance(result, dict) else None
            score = result.get("relevance_score") if isinstance(result, dict) else None
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < inputs:
                return None, f"a result names document {index!r} of {inputs}"
            if index in seen:
                return None, f"document {index} is scored twice"
            if not isinstance(score, (int, float)) or isinstance(score, bool) \
                    or not math.isfinite(score):
                return None, f"document {index}'s relevance_score is {score!r}, not a number"
            seen.add(index)
        if len(seen) != inputs:
            return None, f"the answer scores {len(seen)} of {inputs} documents"
        return usage_tokens(answer, "prompt_tokens", "total_tokens"), None

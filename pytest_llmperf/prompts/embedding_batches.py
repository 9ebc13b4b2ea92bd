"""Embeddings requests of several inputs: each request embeds ``batch`` prompts of a source
(its text and ``Prompt.batch``), the batch an embedding service is sent in production."""

from __future__ import annotations

import dataclasses

from pytest_llmperf.prompts.builtin import Prompt, PromptSource
from pytest_llmperf.results.prompt_origin import PromptOrigin

__all__ = ["EmbeddingBatches"]


class EmbeddingBatches:
    """``source``'s prompts, ``batch`` to a request."""

    def __init__(self, source: PromptSource, batch: int,
                 detail: tuple[str, int] | None = None) -> None:
        if batch < 1:
            raise ValueError(f"an embeddings batch holds at least 1 input, got {batch}")
        self.source = source
        self.batch = batch
        self.about_caching = source.about_caching
        # What the prompts' origin says of the batch (a rerank's documents: one less).
        self.detail = detail or ("embedding_batch", batch)

    def prepare(self, count: int) -> None:
        self.source.prepare(count * self.batch)

    def next_prompt(self) -> Prompt:
        first, *rest = (self.source.next_prompt() for _ in range(self.batch))
        return dataclasses.replace(first, batch=tuple(p.text for p in rest))

    def describe(self) -> PromptOrigin:
        origin = self.source.describe()
        return dataclasses.replace(origin, details={**dict(origin.details),
                                                    self.detail[0]: self.detail[1]})

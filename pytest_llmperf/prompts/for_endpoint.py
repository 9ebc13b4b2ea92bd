"""A window's prompts as the endpoint it drives and the load's settings shape them: one image a
chat request (``--llmperf-images``), several inputs an embeddings request
(``--llmperf-embedding-batch``), one query and its documents a rerank request
(``--llmperf-rerank-documents``).  Prompts a caller already shaped are left as they are."""

from __future__ import annotations

from pytest_llmperf.prompts.builtin import PromptSource
from pytest_llmperf.prompts.embedding_batches import EmbeddingBatches
from pytest_llmperf.prompts.images import ImagePrompts
from pytest_llmperf.settings.groups import LoadSettings

__all__ = ["prompts_for"]


def prompts_for(prompts: PromptSource, api: str | None, load: LoadSettings) -> PromptSource:
    """``prompts`` for a window on ``api`` (chat, completions, embeddings, rerank; None: an
    engine's own client, which chats)."""
    if load.images and api in (None, "chat") and not isinstance(prompts, ImagePrompts):
        return ImagePrompts(prompts, load.images, seed=load.seed)
    if isinstance(prompts, EmbeddingBatches):
        return prompts
    if api == "embeddings" and load.embedding_batch > 1:
        return EmbeddingBatches(prompts, load.embedding_batch)
    if api == "rerank":
        documents = load.rerank_documents
        return EmbeddingBatches(prompts, 1 + documents, ("rerank_documents", documents))
    return prompts

"""What every request sender is, and the model's tokenizer as the senders' fallback counter."""

from __future__ import annotations

from typing import Protocol

from pytest_llmperf.results.records import RequestRecord

__all__ = ["ERROR_TEXT_LIMIT", "RequestSender", "TokenCounter", "short"]

ERROR_TEXT_LIMIT = 300


class RequestSender(Protocol):
    """Sends one request and returns its record; errors become the record's, never raised.

    The OpenAI streaming client, the Ollama client and the in-process client are the ones there
    are; a load generator calls ``send`` from many tasks at once.
    """

    async def send(self, request_id: int, prompt: str) -> RequestRecord: ...


class TokenCounter(Protocol):
    """The served model's own tokenizer, for answers the server sent no ``usage`` for.

    Called after the measured window (never between a user's requests), so these are plain
    blocking calls; each raises on failure, and that request then fails with the reason.
    """

    def count_text(self, text: str) -> int:
        """Tokens of generated text (re-tokenized: may differ a little from what was
        generated, so such counts are marked approximate)."""
        ...

    def count_prompt(self, prompt: str) -> int:
        """Tokens of a user prompt as the server saw it: inside the model's chat template."""
        ...


def short(text: str) -> str:
    """Whitespace folded and cut to ``ERROR_TEXT_LIMIT`` characters, for error records."""
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_LIMIT else text[:ERROR_TEXT_LIMIT] + "..."

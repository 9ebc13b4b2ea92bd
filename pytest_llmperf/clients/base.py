"""What every request sender is, and the model's tokenizer as the senders' fallback counter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_llmperf.results.records import RequestRecord

__all__ = ["ERROR_TEXT_LIMIT", "Prompt", "RequestSender", "TokenCounter", "Tokenizer",
           "Turn", "as_prompt", "short", "timeout_message"]

ERROR_TEXT_LIMIT = 300

Turn = tuple[str, str]  # (role, content) of one earlier message of a chat


@dataclass(frozen=True)
class Prompt:
    """One request's input, as a prompt source hands it out.

    ``text`` is the user's message (the newest turn of a chat); ``history`` the turns before
    it, for multi-turn chats.  ``output_tokens`` is this request's answer length (its
    max_tokens, forced where the engine can), None for the run's.  ``cache`` True lets this
    request be served from the prefix cache where the engine switches it per request
    (llama.cpp), for the tests about caching; None keeps the run's setting.
    ``input_tokens`` is the user text's length by the model's tokenizer when the source made
    it exact (the chat template adds a fixed overhead around it).  ``session`` names the
    conversation a replayed trace's turn belongs to: an open loop sends it only once the turn
    before it has its answer.  ``json_schema`` asks for structured output: the answer must be
    JSON that the schema accepts (an answer that is not fails as ``invalid_output``); its
    length is then the object's, never forced.  ``tools`` (OpenAI function tools) asks for a
    tool call: the answer must call one of them with arguments its parameters schema accepts
    (else ``invalid_output``); nothing forced either.  ``images`` are image URLs (``data:``
    base64 URLs) sent as OpenAI ``image_url`` parts of the user's message; ``image_size`` names
    their size (``512x512``) for the figures per size.
    """

    text: str
    history: tuple[Turn, ...] = ()
    output_tokens: int | None = None
    cache: bool | None = None
    input_tokens: int | None = None
    session: str | None = None
    json_schema: Mapping[str, Any] | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    # Embeddings: the further inputs embedded by the same request (--llmperf-embedding-batch).
    batch: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    image_size: str | None = None

    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of this request, oldest first."""
        content: str | list[dict[str, Any]] = self.text
        if self.images:  # OpenAI content parts: the text, then each image
            content = [{"type": "text", "text": self.text},
                       *({"type": "image_url", "image_url": {"url": url}} for url in self.images)]
        return [*({"role": role, "content": text} for role, text in self.history),
                {"role": "user", "content": content}]

    def flat_text(self) -> str:
        """The whole conversation as one text, for a text-completions API."""
        return "\n\n".join([*(content for _, content in self.history), self.text])

    @property
    def checked(self) -> bool:
        """The answer is checked against a schema when it ends (structured output or a tool
        call), and its length is its own: nothing is forced."""
        return self.json_schema is not None or bool(self.tools)

    def max_tokens(self, default: int) -> int:
        return self.output_tokens if self.output_tokens is not None else default


class RequestSender(Protocol):
    """Sends one request and returns its record; errors become the record's, never raised.

    The OpenAI streaming client, the Ollama client and the in-process client are the ones there
    are; a load generator calls ``send`` from many tasks at once.
    """

    async def send(self, request_id: int, prompt: Prompt) -> RequestRecord: ...


class TokenCounter(Protocol):
    """The served model's own tokenizer, for answers the server sent no ``usage`` for.

    Called after the measured window (never between a user's requests), so these are plain
    blocking calls; each raises on failure, and that request then fails with the reason.
    """

    def count_text(self, text: str) -> int:
        """Tokens of generated text (re-tokenized: may differ a little from what was
        generated, so such counts are marked approximate)."""
        ...

    def count_prompt(self, prompt: str, history: Sequence[Turn] = ()) -> int:
        """Tokens of a user prompt (after ``history``) as the server saw it: inside the
        model's chat template."""
        ...


class Tokenizer(Protocol):
    """The served model's tokenizer as ids, for prompt sources that make exact lengths."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens and no chat template."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...


def as_prompt(prompt: Prompt | str) -> Prompt:
    """A plain string is a one-turn prompt with the run's answer length."""
    return prompt if isinstance(prompt, Prompt) else Prompt(prompt)


def timeout_message(request_s: float, first_token_s: float | None, answered: bool) -> str:
    """What a request that ran out of time is told: which limit it ran into."""
    if not answered and first_token_s is not None and first_token_s < request_s:
        return f"no first token within {first_token_s:g} s (--llmperf-ttft-timeout)"
    return f"no complete answer within {request_s:g} s (--llmperf-request-timeout)"


def short(text: str) -> str:
    """Whitespace folded and cut to ``ERROR_TEXT_LIMIT`` characters, for error records."""
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_LIMIT else text[:ERROR_TEXT_LIMIT] + "..."

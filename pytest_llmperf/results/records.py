"""Immutable records of what one streamed request did, as seen by the client.

Only raw observations live here (timestamps, counts, what the server said).  Every metric
derived from them is defined once, in :mod:`pytest_llmperf.results.metrics`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class TokenSource(enum.StrEnum):
    """Where a token count came from.  Characters or words are never a source."""

    USAGE = "usage"  # the server's own `usage` block
    TOKENIZER = "tokenizer"  # the model's tokenizer, asked after the fact
    ENGINE = "engine"  # an in-process engine's own generated token ids


@dataclass(frozen=True)
class RequestRecord:
    """One request of a load run.

    Times are ``time.perf_counter_ns()`` readings taken in the client process (on Linux the
    machine's monotonic clock, the same in every client process).  ``send_ns`` is when the
    request's body was written to the connection (clients.http).
    ``chunk_ns`` holds one reading per network read of the stream that carried generated
    text (content or reasoning): role-only and usage-only chunks are not tokens, and events
    that came in one read share its reading.
    """

    request_id: int
    send_ns: int
    chunk_ns: tuple[int, ...] = ()
    end_ns: int = 0
    output_tokens: int = 0
    output_token_source: TokenSource | None = None
    input_tokens: int | None = None
    input_token_source: TokenSource | None = None
    finish_reason: str | None = None
    error: str | None = None
    # The failure's category (results.errors.ErrorKind value); set with every error.
    error_kind: str | None = None
    # Numbers the engine reported about this request (llama.cpp `timings`), for cross-checks.
    server_timings: Mapping[str, float] = field(default_factory=dict)
    # Text kept only until the model's tokenizer has counted it, when the server sent no usage
    # for it; emptied once counted, after the measured window (load.token_count).
    output_text: str | None = field(default=None, repr=False)
    prompt_text: str | None = field(default=None, repr=False)
    prompt_history: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Sent a second time because its pooled connection had been closed by the server before a
    # byte of answer came (clients.http); the times are the second send's.
    resent: bool = False
    # Open loop: when the schedule said this request should be sent (perf_counter_ns); the
    # wait until ``send_ns`` is the schedule slip.  None in a closed loop (sent when due).
    scheduled_ns: int | None = None
    # Open loop with max_concurrency: how long it waited for a free slot, the part of the slip
    # that is the server's (slow answers hold the slots), not the client's lateness.
    queued_ns: int = 0
    # The answer length this request asked for (its max_tokens); None where not known.
    max_tokens: int | None = None
    # Prompt tokens the server says it answered from its prefix cache; None: it does not say.
    cached_tokens: int | None = None
    # The user text's length by the model's tokenizer, when the prompt source made it exact.
    dataset_input_tokens: int | None = None
    # Reasoning models.  ``reasoning_chunks`` counts the reads that carried reasoning
    # ("thinking") text; ``answer_start_ns``/``answer_end_ns`` are the first and last reads
    # that carried answer text (None: no answer text came).  A client that cannot tell the
    # two apart, or a stream with no reasoning, leaves reasoning_chunks 0: then the whole
    # stream is the answer and these two are not needed.
    reasoning_chunks: int = 0
    answer_start_ns: int | None = None
    answer_end_ns: int | None = None
    # Reasoning tokens (part of output_tokens): the server's usage
    # (``completion_tokens_details.reasoning_tokens``) or the model's tokenizer after the
    # window; None when reasoning came and nothing could count it.
    reasoning_tokens: int | None = 0
    reasoning_token_source: TokenSource | None = None
    reasoning_text: str | None = field(default=None, repr=False)  # kept until counted
    # Structured output: the answer was checked against the JSON schema the request gave (its
    # length is the object's, not a forced one).
    schema_checked: bool = False
    # Several replicas (clients.replicas): the base URL of the one that served it.
    replica: str | None = None
    # An embeddings request (clients.embeddings): the vectors it got back; 0 for generation.
    # Such a request streams nothing: no chunk, its latency runs to ``end_ns``.
    embedded_inputs: int = 0
    # Images in chat: the size of the images the request carried (``512x512``); None: none.
    image_size: str | None = None

    @property
    def approximate_counts(self) -> tuple[str, ...]:
        """Counts that are estimates: output tokens re-tokenized from the answer's text can
        differ a little from the tokens the model generated."""
        return ("output_tokens",) if self.output_token_source is TokenSource.TOKENIZER else ()

    @property
    def last_byte_ns(self) -> int:
        """When the answer's last token came (its last read); an answer that streams nothing
        (embeddings) ends at ``end_ns``."""
        return self.chunk_ns[-1] if self.chunk_ns else self.end_ns

    @property
    def has_reasoning(self) -> bool:
        return self.reasoning_chunks > 0

    @property
    def answer_tokens(self) -> int | None:
        """Output tokens of the answer a user reads (reasoning excluded); None when the
        reasoning tokens are not known."""
        if self.reasoning_tokens is None:
            return None
        return self.output_tokens - self.reasoning_tokens

    @property
    def ok(self) -> bool:
        """A request counts as completed when it produced at least one token and no error (an
        embeddings request: when its vectors came back)."""
        if self.embedded_inputs:
            return self.error is None
        return self.error is None and bool(self.chunk_ns) and self.output_tokens > 0


@dataclass(frozen=True)
class LoadRun:
    """The measured window of one load run: its requests and where the window starts and ends.

    Warm-up requests are never part of ``records``; the window starts when the first measured
    request is sent (open loop: is due) and ends when the last one finishes.  ``concurrency``
    is the closed loop's users, or the most requests an open loop had in flight at once.
    """

    records: tuple[RequestRecord, ...]
    window_start_ns: int
    window_end_ns: int
    concurrency: int
    warmup_requests: int
    # Why the load stopped sending before its planned end (a capacity probe that had
    # clearly failed); None when it ran to the end.
    stopped_early: str | None = None

    @property
    def duration_s(self) -> float:
        return max(self.window_end_ns - self.window_start_ns, 0) / 1e9

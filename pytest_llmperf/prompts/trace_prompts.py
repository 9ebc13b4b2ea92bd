"""The prompts of a replayed trace: each request's own lengths, and the trace's shared blocks as
shared text.

Request k of the trace gets a prompt of its recorded input length in the model's tokens and an
answer forced to its recorded output length.  Where the trace names the prompt's blocks
(``hash_ids``), block j of the prompt is the text of its id, :data:`BLOCK_TOKENS` tokens (the
last block what is left of the length): two requests whose lists start with the same ids start
with the same text, so the server's prefix cache sees the reuse the trace recorded, no more and
no less.  What the blocks do not cover is text of the request's own.  The parts are joined by
a line break, so a prompt is its recorded length within a token a block (the server's count is
the one reported).

Every block and every request's own text starts with a tag made from the source's salt (fresh
for every run, prompts.builtin), so a server that stays up between runs has none of them cached:
a second run is not flattered.  Past the trace's end the requests start over as new ones (a new
round of tags).  Texts are made with the tokenizer before the window (``prepare``).

A request with a session carries it (``Prompt.session``, one per round of the trace), so the
open loop sends a conversation's turns one after another.

A replay (:func:`replay_shape`) sends ``warmup`` warm-up requests first, at the trace's mean gap:
their prompts are text of their own at the trace's median lengths, so they warm the server
without caching any of the trace's blocks.
"""

from __future__ import annotations

import math
import random
import secrets
import statistics

from pytest_llmperf.clients.base import Prompt, Tokenizer
from pytest_llmperf.prompts.builtin import MadeAhead, unique_tag
from pytest_llmperf.prompts.synthetic import MIN_PROMPT_TOKENS, exact_text
from pytest_llmperf.prompts.trace_files import BLOCK_TOKENS, Trace
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.prompt_origin import PromptOrigin

__all__ = ["TracePrompts", "replay_shape"]


def replay_shape(trace: Trace, warmup: int = 0,
                 max_concurrency: int | None = None) -> LoadShape:
    """The trace's arrivals as an open loop, after ``warmup`` arrivals at its mean gap: the
    measured window starts at the trace's first request."""
    gap = 1.0 / trace.mean_rate if math.isfinite(trace.mean_rate) else 0.0
    offsets = (*(i * gap for i in range(warmup)),
               *(warmup * gap + r.offset_s for r in trace.requests))
    return LoadShape.replay(offsets, rate=trace.mean_rate, max_concurrency=max_concurrency)


class TracePrompts(MadeAhead):
    about_caching = True  # the trace's own reuse is the point

    def __init__(self, tokenizer: Tokenizer, trace: Trace, *, warmup: int = 0, seed: int = 0,
                 salt: str | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.trace = trace
        self.warmup = warmup
        self.seed = seed
        self.salt = salt if salt is not None else secrets.token_hex(4)
        self._blocks: dict[tuple[int, int, int], str] = {}  # (round, id, tokens) -> its text
        self._made = 0

    def _text(self, tokens: int, rng: random.Random, tag: str) -> str:
        # A text too short to hold its tag is plain words (the blocks before it are tagged).
        return exact_text(self.tokenizer, tokens, rng, tag if tokens >= MIN_PROMPT_TOKENS else "")

    def _block(self, cycle: int, block_id: int, tokens: int) -> str:
        key = (cycle, block_id, tokens)
        if key not in self._blocks:
            rng = random.Random(f"{self.seed}-block-{block_id}-{tokens}")
            tag = unique_tag(f"{self.salt}-block-{cycle}", block_id)
            self._blocks[key] = self._text(tokens, rng, tag)
        return self._blocks[key]

    def _make(self) -> Prompt:
        if self._made < self.warmup:
            return self._warmup_prompt()
        cycle, index = divmod(self._made - self.warmup, len(self.trace.requests))
        self._made += 1
        request = self.trace.requests[index]
        parts = [self._block(cycle, block_id, min(BLOCK_TOKENS,
                                                  request.input_tokens - j * BLOCK_TOKENS))
                 for j, block_id in enumerate(request.hash_ids)]
        own = request.input_tokens - len(request.hash_ids) * BLOCK_TOKENS
        if own > 0:
            rng = random.Random(f"{self.seed}-request-{self._made}")
            parts.append(self._text(own, rng, unique_tag(self.salt, self._made)))
        session = None if request.session is None else f"{cycle}-{request.session}"
        return Prompt("\n".join(parts), output_tokens=request.output_tokens, cache=True,
                      input_tokens=None if request.hash_ids else request.input_tokens,
                      session=session)

    def _warmup_prompt(self) -> Prompt:
        self._made += 1
        requests = self.trace.requests
        tokens = round(statistics.median(r.input_tokens for r in requests))
        rng = random.Random(f"{self.seed}-warmup-{self._made}")
        return Prompt(self._text(tokens, rng, unique_tag(f"{self.salt}-warmup", self._made)),
                      output_tokens=round(statistics.median(r.output_tokens for r in requests)),
                      input_tokens=tokens)

    def describe(self) -> PromptOrigin:
        trace = self.trace
        return PromptOrigin("trace", self.seed, self.salt, {
            "file": str(trace.path), "format": trace.format, "requests": len(trace.requests),
            "speed": trace.speed, "start_s": trace.start_s, "end_s": trace.end_s,
            "reuse_ratio": None if trace.reuse_ratio is None else round(trace.reuse_ratio, 4),
        }, self.about_caching, self.made_in_window)

"""Prompts from a user's dataset file (ShareGPT or JSONL), seeded, filtered by length.

Like vLLM's benchmark on ShareGPT: each answer is as long as the dataset's own reply in the
model's tokens (or ``output=N``, or a JSONL line's ``output_tokens``), and prompts or replies
under 4 tokens, prompts over ``max-input`` and pairs that overflow the context are left out.
With no tokenizer nothing is counted or left out and each answer gets the run's max_tokens.

The order is the seed's; every prompt starts with a unique tag (a multi-turn chat's tag stays
the same for all its turns, which share their history), and when the file runs out it starts
over behind new tags, so no request is ever answered from a cache of an earlier one.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence

from pytest_llmperf.clients.base import Prompt, Tokenizer
from pytest_llmperf.prompts.builtin import MadeAhead, unique_tag
from pytest_llmperf.prompts.dataset_files import DatasetEntry
from pytest_llmperf.results.prompt_origin import PromptOrigin, Scalar

__all__ = ["MIN_TOKENS", "FilePrompts"]

MIN_TOKENS = 4  # vLLM's benchmark leaves out shorter prompts and replies (too few to time)


class FilePrompts(MadeAhead):
    """Hands out a file's entries, ``prepare`` counting their tokens before a window."""

    def __init__(self, entries: Sequence[DatasetEntry], *, kind: str, path: str,
                 tokenizer: Tokenizer | None, output_tokens: int | None = None,
                 max_input: int | None = None, context_tokens: int | None = None,
                 multi_turn: bool = False, seed: int = 0, salt: str | None = None,
                 sample: str | None = None) -> None:
        if not entries:
            raise ValueError(f"{path}: no prompts")
        super().__init__()
        self.kind, self.path = kind, path
        self.tokenizer = tokenizer
        self.output_tokens = output_tokens
        self.max_input = max_input
        self.context_tokens = context_tokens
        self.about_caching = multi_turn  # later turns resend earlier ones: the cache helps
        self.seed = seed
        self.sample = sample  # "10000 of 94145 conversations": the file held more
        self.salt = salt if salt is not None else secrets.token_hex(4)
        self._order = _order(entries, multi_turn, seed)
        self._position = 0
        self._cycles = 0
        self.left_out = 0

    def _make(self) -> Prompt:
        for _ in range(2 * len(self._order) + 1):  # at most two passes to find a usable one
            if self._position == len(self._order):  # a new pass starts: new tags
                self._position, self._cycles = 0, self._cycles + 1
            conversation, entry = self._order[self._position]
            self._position += 1
            prompt = self._prompt(conversation, entry)
            if prompt is not None:
                return prompt
            self.left_out += 1
        raise ValueError(f"{self.path}: every prompt was left out by its length "
                         f"(max-input {self.max_input}, context {self.context_tokens})")

    def _prompt(self, conversation: int, entry: DatasetEntry) -> Prompt | None:
        tag = unique_tag(self.salt, self._cycles * len(self._order) + conversation)
        history = entry.history
        if history:  # the tag opens the chat, so all its turns share it
            (role, first), *rest = history
            history = ((role, f"{tag} {first}"), *rest)
            text = entry.text
        else:
            text = f"{tag} {entry.text}"
        output = self.output_tokens or entry.output_tokens
        input_tokens = None
        if self.tokenizer is not None:
            input_tokens = len(self.tokenizer.encode(entry.text))
            if output is None and entry.reference_answer is not None:
                output = len(self.tokenizer.encode(entry.reference_answer))
            if input_tokens < MIN_TOKENS or (output is not None and output < MIN_TOKENS):
                return None
            if self.max_input is not None and input_tokens > self.max_input:
                return None
            history_tokens = sum(len(self.tokenizer.encode(c)) for _, c in history)
            if (self.context_tokens is not None
                    and history_tokens + input_tokens + (output or 0) > self.context_tokens):
                return None
        return Prompt(text, history=history, output_tokens=output)

    def describe(self) -> PromptOrigin:
        details: dict[str, Scalar] = {"path": self.path}
        if self.sample:
            details["sampled"] = self.sample
        if self.output_tokens:
            details["output_tokens"] = self.output_tokens
        if self.left_out:
            details["left_out_by_length"] = self.left_out
        if self._cycles:
            details["passes_over_the_file"] = self._cycles + 1
        return PromptOrigin(self.kind, self.seed, self.salt, details, self.about_caching,
                            self.made_in_window)


def _order(entries: Sequence[DatasetEntry], multi_turn: bool, seed: int
           ) -> list[tuple[int, DatasetEntry]]:
    """(conversation number, entry) in the seed's order; a chat's turns stay in order."""
    conversations: list[list[DatasetEntry]] = []
    for entry in entries:
        if multi_turn and conversations and _continues(conversations[-1][-1], entry):
            conversations[-1].append(entry)  # a later turn of the same chat
        else:
            conversations.append([entry])
    random.Random(seed).shuffle(conversations)
    return [(number, entry) for number, turns in enumerate(conversations, 1) for entry in turns]


def _continues(earlier: DatasetEntry, entry: DatasetEntry) -> bool:
    """Whether ``entry`` is the next turn of ``earlier``'s chat (its history holds it)."""
    known = len(earlier.history)
    return (len(entry.history) > known and entry.history[:known] == earlier.history
            and entry.history[known] == ("user", earlier.text))

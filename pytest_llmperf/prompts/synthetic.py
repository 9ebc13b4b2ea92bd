"""Synthetic prompts of an exact length in the served model's own tokens.

As vLLM's random dataset and genai-bench's scenarios: each prompt's user text is exactly N
tokens by the model's tokenizer (the chat template then adds its fixed overhead around it),
and each answer is forced to its own length.  Lengths are fixed (``512``), uniform
(``256..1024``, both ends included) or normal (``512~128``: mean and standard deviation, at
least the shortest a prompt can be).  The text is seeded random common words behind a unique
tag (:func:`~pytest_llmperf.prompts.builtin.unique_tag`), so it never repeats a cached prefix.

Making a prompt asks the tokenizer (for a server, its ``/tokenize`` endpoint) a few times, so
prompts are made before the measured window (:meth:`RandomPrompts.prepare`); one made inside a
window is counted and reported.
"""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from pytest_llmperf.clients.base import Prompt, Tokenizer
from pytest_llmperf.prompts.builtin import MadeAhead, unique_tag
from pytest_llmperf.results.prompt_origin import PromptOrigin

__all__ = ["MAX_TOKENS", "MIN_PROMPT_TOKENS", "Lengths", "RandomPrompts", "bounded", "exact_text",
           "parse_lengths"]

# The tag at the start of every prompt takes a few tokens; shorter prompts cannot be exact.
MIN_PROMPT_TOKENS = 16
# Beyond any served model's context (10M tokens is the longest there is): a longer length is a
# typo, and exact_text would build a text of that many words before asking the tokenizer.
MAX_TOKENS = 10_000_000

# Common English words: prompts read like text, not like random token ids.
_WORDS = (
    "time", "people", "year", "way", "day", "man", "thing", "woman", "life", "child", "world",
    "school", "state", "family", "student", "group", "country", "problem", "hand", "part",
    "place", "case", "week", "company", "system", "program", "question", "work", "government",
    "number", "night", "point", "home", "water", "room", "mother", "area", "money", "story",
    "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business",
    "issue", "side", "kind", "head", "house", "service", "friend", "father", "power", "hour",
    "game", "line", "end", "member", "law", "car", "city", "community", "name", "president",
    "team", "minute", "idea", "kid", "body", "information", "back", "parent", "face", "others",
    "level", "office", "door", "health", "person", "art", "war", "history", "party", "result",
    "change", "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher",
    "force", "education", "foot", "boy", "age", "policy", "music", "market", "sense", "nation",
    "plan", "college", "interest", "death", "experience", "effect", "class", "control", "care",
    "field", "development", "role", "effort", "rate", "heart", "drug", "show", "leader",
    "light", "voice", "wife", "police", "mind", "price", "report", "decision", "son", "view",
    "relationship", "town", "road", "arm", "difference", "value", "building", "action",
    "model", "season", "society", "tax", "director", "position", "player", "record", "paper",
    "space", "ground", "form", "event", "official", "matter", "center", "couple", "site",
    "project", "activity", "star", "table", "need", "court", "oil", "situation", "cost",
    "industry", "figure", "street", "image", "phone", "data", "picture", "practice", "piece",
    "land", "product", "doctor", "wall", "patient", "worker", "news", "test", "movie", "north",
    "love", "support", "technology", "step", "baby", "computer", "type", "attention", "film",
    "tree", "source", "organ", "bright", "quick", "small", "large", "early", "young",
    "important", "public", "bad", "same", "able", "green", "river", "old",
)


@dataclass(frozen=True)
class Lengths:
    """A token length: ``fixed`` N, ``uniform`` low..high, or ``normal`` mean~stdev."""

    kind: Literal["fixed", "uniform", "normal"]
    first: int
    second: int = 0

    def sample(self, rng: random.Random, floor: int = 1) -> int:
        if self.kind == "fixed":
            return self.first
        if self.kind == "uniform":
            return rng.randint(self.first, self.second)
        return max(floor, round(rng.gauss(self.first, self.second)))

    @property
    def largest(self) -> int:
        """The longest it gives in practice (a normal's mean + 4 standard deviations)."""
        return {"fixed": self.first, "uniform": self.second,
                "normal": self.first + 4 * self.second}[self.kind]

    def describe(self) -> str:
        return {"fixed": f"{self.first}", "uniform": f"{self.first}..{self.second}",
                "normal": f"{self.first}~{self.second}"}[self.kind]


_UNIFORM = re.compile(r"(\d+)\.\.(\d+)")
_NORMAL = re.compile(r"(\d+)~(\d+)")


def parse_lengths(text: str, *, name: str, floor: int = 1) -> Lengths:
    """``512``, ``256..1024`` or ``512~128``; ValueError naming ``name`` otherwise."""
    text = text.strip()
    expected = (f"{name}: expected N, LOW..HIGH or MEAN~STDEV tokens (e.g. 512, 256..1024, "
                f"512~128), got {text!r}")
    if text.isdigit():
        lengths = Lengths("fixed", bounded(text, name))
    elif (match := _UNIFORM.fullmatch(text)) is not None:
        lengths = Lengths("uniform", bounded(match[1], name), bounded(match[2], name))
        if lengths.second < lengths.first:
            raise ValueError(f"{name}: {text!r} ends below where it starts")
    elif (match := _NORMAL.fullmatch(text)) is not None:
        lengths = Lengths("normal", bounded(match[1], name), bounded(match[2], name))
    else:
        raise ValueError(expected)
    if lengths.first < floor:
        raise ValueError(f"{name}: {text!r} is below {floor} tokens, the shortest that can be "
                         "made exact here")
    return lengths


# Rounds of adding words before exact_text gives up: a real tokenizer needs one or two.
_MAX_ROUNDS = 16


def bounded(digits: str, name: str) -> int:
    """A whole number of tokens (or a count) written as ``digits``, at most :data:`MAX_TOKENS`
    (checked on the text first: int() of thousands of digits raises a bare ValueError)."""
    if not (digits.isascii() and digits.isdigit()):  # isdigit() alone takes '²'
        raise ValueError(f"{name}: expected a whole number in ASCII digits, got "
                         f"{digits!r}")
    if len(digits.lstrip("0")) > len(str(MAX_TOKENS)) or int(digits) > MAX_TOKENS:
        shown = digits if len(digits) <= 20 else f"{digits[:12]}... ({len(digits)} digits)"
        raise ValueError(f"{name}: {shown} is more than any model's context: at most "
                         f"{MAX_TOKENS}")
    return int(digits)


class ExactLengthError(RuntimeError):
    """The tokenizer would not give a text of the length asked for."""


def exact_text(tokenizer: Tokenizer, tokens: int, rng: random.Random, head: str) -> str:
    """A text that starts with ``head`` and is exactly ``tokens`` tokens long by
    ``tokenizer`` (no special tokens): random words, cut at the right token and checked."""
    text = head
    ids = tokenizer.encode(text)
    rounds = 0
    while len(ids) < tokens + 8:  # a margin, so the cut never lands at the very end
        missing = tokens + 8 - len(ids)
        rounds += 1
        if rounds > _MAX_ROUNDS:
            # Each round adds a word per missing token; a tokenizer that counts words as
            # tokens gets there in a round or two.  One that does not would loop for ever.
            raise ExactLengthError(
                f"could not make a prompt of exactly {tokens} tokens: after {_MAX_ROUNDS} "
                f"rounds of adding words the tokenizer counts {len(ids)} tokens in "
                f"{len(text.split())} words (a tokenizer that does not count text, such as a "
                "broken /tokenize endpoint?)")
        text += " " + " ".join(rng.choice(_WORDS) for _ in range(max(8, missing)))
        ids = tokenizer.encode(text)
    cut = tokens
    for _ in range(8):
        # Cutting the ids and decoding can merge or split tokens at the cut; re-count.
        candidate = tokenizer.decode(ids[:cut])
        got = len(tokenizer.encode(candidate))
        if got == tokens:
            return candidate
        cut += tokens - got
    raise ExactLengthError(f"could not make a prompt of exactly {tokens} tokens (the "
                           "tokenizer's decode and encode do not round-trip)")


class RandomPrompts(MadeAhead):
    """Prompts of exact input lengths with forced answer lengths, seeded and never repeated.

    ``output`` None leaves each answer at the run's max_tokens.  ``seed`` fixes the lengths
    and words; the salt (fresh per source unless given) fixes the tag at each prompt's start.
    """

    about_caching = False

    def __init__(self, tokenizer: Tokenizer, *, input_lengths: Lengths,
                 output_lengths: Lengths | None = None, seed: int = 0,
                 salt: str | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.input_lengths = input_lengths
        self.output_lengths = output_lengths
        self.seed = seed
        self.salt = salt if salt is not None else secrets.token_hex(4)
        self._made = 0

    def _make(self) -> Prompt:
        self._made += 1
        rng = random.Random(f"{self.seed}-{self._made}")  # prompt k is the same for a seed
        tokens = self.input_lengths.sample(rng, MIN_PROMPT_TOKENS)
        output = self.output_lengths.sample(rng, 1) if self.output_lengths else None
        text = exact_text(self.tokenizer, tokens, rng, unique_tag(self.salt, self._made))
        return Prompt(text, output_tokens=output, input_tokens=tokens)

    def describe(self) -> PromptOrigin:
        return PromptOrigin("random", self.seed, self.salt, {
            "input_tokens": self.input_lengths.describe(),
            "output_tokens": self.output_lengths.describe() if self.output_lengths else None,
        }, self.about_caching, self.made_in_window)

"""What a prompt source is, the built-in prompt set, and the tag that keeps prompts unique.

Engines cache prompt prefixes (llama.cpp slots, vLLM/SGLang prefix caching).  A suite that sends
the same prompt twice measures the cache, not prefill: single-user TTFT on llama.cpp reads 23 ms
with repeated prompts against 281 ms without.  So every prompt a :class:`PromptSource` hands out
starts with a tag made from a salt and the request's number: the salt is fresh for every source
(every run), so a server that stays up between runs cannot answer the second run from its cache
either, and the number makes each prompt of a run unique.  Caches match prefixes from the start
and the tag is a hash, so any two prompts part ways at its first characters; only the chat
template's fixed head before the user's text stays shared, as it is for every request a model
gets.  The ``seed`` alone decides the order of the texts, so a run's content is reproducible;
seed and salt are recorded with every result.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import random
import secrets
import threading
from typing import Protocol

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.results.prompt_origin import PromptOrigin

__all__ = ["BUILTIN_PROMPTS", "BuiltinPrompts", "MadeAhead", "Prompt", "PromptSource",
           "unique_tag"]


class PromptSource(Protocol):
    """Hands out the prompts of a session, one per request, from any task or thread.

    ``describe`` is what the result store and the report record about where the prompts came
    from and how to get the same ones again (the dataset, its seed, its salt).
    ``about_caching`` is True for sources built to hit the prefix cache (shared documents,
    multi-turn chats): a cache hit is then the point, not a flaw of the measurement.
    """

    about_caching: bool

    def prepare(self, count: int) -> None:
        """Have the next ``count`` prompts ready; called before a measured window, so that a
        source that asks the server's tokenizer does it outside the window."""
        ...

    def next_prompt(self) -> Prompt: ...

    def describe(self) -> PromptOrigin: ...


def unique_tag(salt: str, number: int) -> str:
    """``[1a2b3c4d]``: differs from the first character between any two numbers of a salt
    ("[salt-1]" and "[salt-2]" would share the salt's tokens), so no two prompts share a
    prefix a cache could match beyond the chat template's head."""
    return "[" + hashlib.blake2s(f"{salt}-{number}".encode(), digest_size=4).hexdigest() + "]"

class MadeAhead:
    """A source whose prompts cost tokenizer calls to make: ``prepare`` makes them before a
    window; one the window needs before it is ready is made on the spot and counted in
    ``made_in_window`` (the report says so).  Subclasses define ``_make``."""

    def __init__(self) -> None:
        self._ready: collections.deque[Prompt] = collections.deque()
        self._lock = threading.Lock()
        self.made_in_window = 0

    def _make(self) -> Prompt:
        raise NotImplementedError

    def prepare(self, count: int) -> None:
        with self._lock:
            while len(self._ready) < count:
                self._ready.append(self._make())

    def next_prompt(self) -> Prompt:
        with self._lock:
            if self._ready:
                return self._ready.popleft()
            self.made_in_window += 1
            return self._make()


# Short chat prompts of the kind the field notes measured with, English and Chinese.
BUILTIN_PROMPTS: tuple[str, ...] = (
    "Explain in a few sentences what a GPU does in a computer.",
    "Write a short story about a robot learning to paint.",
    "List five tips for staying productive when working from home.",
    "What is the difference between a list and a tuple in Python?",
    "Summarize the plot of a classic detective novel in one paragraph.",
    "Describe how a bicycle gear system works.",
    "Give me a simple recipe for tomato soup.",
    "Why is the sky blue? Answer for a ten-year-old.",
    "Write a polite email asking a colleague to review my report.",
    "Explain what an API is to someone who does not program.",
    "请用几句话介绍一下大语言模型的工作原理。",
    "写一首关于秋天的短诗。",
    "解释一下什么是云计算，以及它的主要优点。",
    "给我三个提高学习效率的建议。",
    "简单介绍一下长城的历史。",
    "如何向小学生解释光合作用？",
)


class BuiltinPrompts:
    """Deterministic texts, never-repeating prompts: the order depends only on ``seed``, the
    salt (fresh random hex unless given) differs from run to run.

    One source serves a whole session against one server, so no two requests of any test
    share a prefix that the server could have cached.  Safe to call from several threads.
    """

    def __init__(self, seed: int = 0, prompts: tuple[str, ...] = BUILTIN_PROMPTS,
                 salt: str | None = None) -> None:
        if not prompts:
            raise ValueError("a prompt source needs at least one prompt")
        order = list(prompts)
        random.Random(seed).shuffle(order)
        self.seed = seed
        self.salt = salt if salt is not None else secrets.token_hex(4)
        self._cycle = itertools.cycle(order)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    about_caching = False

    def prepare(self, count: int) -> None:
        """Nothing to make ahead: the texts are built in."""

    def next_prompt(self) -> Prompt:
        with self._lock:
            number = next(self._counter)
            text = next(self._cycle)
        return Prompt(f"{unique_tag(self.salt, number)} {text}")

    def describe(self) -> PromptOrigin:
        """What the result store and reports record: how to get the same texts again."""
        return PromptOrigin("built-in", self.seed, self.salt)

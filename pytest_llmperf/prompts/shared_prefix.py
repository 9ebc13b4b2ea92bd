"""Long documents, each asked several questions: the prompts of a prefix-cache test.

As SGLang's generated-shared-prefix dataset: ``documents`` texts of ``document`` tokens, each
followed by ``questions`` different questions of ``question`` tokens, every length exact in the
model's tokens.  Prompts come round by round: the first question of every document, then the
second of every document, and so on; so the first round finds nothing cached and every later
round can reuse a document's prefix.  Documents start with a unique tag (fresh salt per
source), so a server that stays up cannot have them cached from an earlier run.

Each prompt asks for the prefix cache (``Prompt.cache``) where the engine switches it per
request; ``cache=False`` asks for it off, the other side of a cache on/off comparison.
"""

from __future__ import annotations

import random
import secrets

from pytest_llmperf.clients.base import Prompt, Tokenizer
from pytest_llmperf.prompts.builtin import MadeAhead, unique_tag
from pytest_llmperf.prompts.synthetic import exact_text
from pytest_llmperf.results.prompt_origin import PromptOrigin

__all__ = ["SharedPrefixPrompts"]


class SharedPrefixPrompts(MadeAhead):
    about_caching = True

    def __init__(self, tokenizer: Tokenizer, *, documents: int = 4, questions: int = 4,
                 document_tokens: int = 1024, question_tokens: int = 32,
                 output_tokens: int | None = 32, cache: bool = True, seed: int = 0,
                 salt: str | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.documents, self.questions = documents, questions
        self.document_tokens, self.question_tokens = document_tokens, question_tokens
        self.output_tokens = output_tokens
        self.cache = cache
        self.seed = seed
        self.salt = salt if salt is not None else secrets.token_hex(4)
        self._texts: dict[int, str] = {}  # document number -> its text, made once
        self._made = 0

    @property
    def size(self) -> int:
        """Prompts in one pass: every question of every document."""
        return self.documents * self.questions

    def _document(self, number: int) -> str:
        if number not in self._texts:
            rng = random.Random(f"{self.seed}-document-{number}")
            self._texts[number] = exact_text(self.tokenizer, self.document_tokens, rng,
                                             unique_tag(self.salt, number))
        return self._texts[number]

    def _make(self) -> Prompt:
        index = self._made
        self._made += 1
        # Past the last round the documents start over as new ones (new tags): never a
        # question asked twice.
        cycle, within = divmod(index, self.size)
        question_round, document = divmod(within, self.documents)
        number = cycle * self.documents + document + 1
        rng = random.Random(f"{self.seed}-question-{number}-{question_round}")
        question = exact_text(self.tokenizer, self.question_tokens, rng,
                              f"Question {question_round + 1}:")
        return Prompt(f"{self._document(number)}\n\n{question}", output_tokens=self.output_tokens,
                      cache=self.cache, input_tokens=None)

    def describe(self) -> PromptOrigin:
        return PromptOrigin("shared-prefix", self.seed, self.salt, {
            "documents": self.documents, "questions": self.questions,
            "document_tokens": self.document_tokens, "question_tokens": self.question_tokens,
            "output_tokens": self.output_tokens, "cache": self.cache,
        }, self.about_caching, self.made_in_window)

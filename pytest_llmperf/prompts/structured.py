"""Structured output: prompts whose answers must be JSON that a schema accepts.

:class:`StructuredPrompts` gives each prompt of another source (by default, tasks of its own
that ask for a record) a JSON schema: the client sends it as ``response_format``
(``json_schema``, as OpenAI, vLLM, SGLang and llama.cpp take it), checks the answer against it
when it has ended, and fails an answer that does not match as ``invalid_output``.  The time to
a complete valid object is then the request's ``e2el_ms``.  The shipped schema bounds every
string and list, so an answer fits the suite's answer length on any model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pytest_llmperf.prompts.builtin import BuiltinPrompts, Prompt, PromptSource
from pytest_llmperf.results.prompt_origin import PromptOrigin

__all__ = ["RECORD_SCHEMA", "RECORD_TASKS", "StructuredPrompts"]

# A record of the kind services extract or generate: bounded so it fits about 150 tokens.
RECORD_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 32},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "minLength": 1, "maxLength": 32},
        "interests": {"type": "array", "minItems": 1, "maxItems": 3,
                      "items": {"type": "string", "minLength": 1, "maxLength": 24}},
    },
    "required": ["name", "age", "city", "interests"],
    "additionalProperties": False,
}

RECORD_TASKS: tuple[str, ...] = (
    "Invent a customer of a bakery and give their name, age, city and interests as JSON.",
    "Describe a fictional chess player as JSON: name, age, city and interests.",
    "Create a profile for a new member of a hiking club as JSON (name, age, city, interests).",
    "Make up a pen pal from another country; answer with JSON holding name, age, city and "
    "interests.",
    "Give a JSON record for a character in a detective novel: name, age, city, interests.",
    "Invent a student applying to a music school, as JSON with name, age, city and "
    "interests.",
)


class StructuredPrompts:
    """``source``'s prompts (by default :data:`RECORD_TASKS`), each asking for an answer that
    ``schema`` accepts."""

    def __init__(self, source: PromptSource | None = None, *,
                 schema: Mapping[str, Any] = RECORD_SCHEMA, seed: int = 0) -> None:
        self.source = source or BuiltinPrompts(seed=seed, prompts=RECORD_TASKS)
        self.schema = schema
        self.about_caching = self.source.about_caching

    def prepare(self, count: int) -> None:
        self.source.prepare(count)

    def next_prompt(self) -> Prompt:
        return dataclasses.replace(self.source.next_prompt(), json_schema=self.schema)

    def describe(self) -> PromptOrigin:
        origin = self.source.describe()
        keys = ",".join(sorted(self.schema.get("properties", {})))
        return dataclasses.replace(origin, details={
            **dict(origin.details), "structured": f"JSON schema ({keys or 'no properties'})"})

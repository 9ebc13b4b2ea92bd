"""Where a window's prompts came from, and how to get the same texts again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_llmperf.results.jsonfields import Fields, JSONObject

__all__ = ["PromptOrigin", "Scalar"]

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class PromptOrigin:
    """``source`` (built-in, random, sharegpt, jsonl, shared-prefix), the ``seed`` of their order
    and the ``salt`` that made them new for this run; ``details`` are the source's own facts
    (lengths, path, documents), in the order the report lists them."""

    source: str
    seed: int
    salt: str
    details: Mapping[str, Scalar] = field(default_factory=dict)
    # The source is about the prefix cache (shared-prefix): cache hits are its point.
    about_caching: bool = False
    # Prompts made inside the window (the tokenizer asked between requests), not ahead of it.
    made_in_window: int = 0

    def to_json(self) -> JSONObject:
        return {"source": self.source, "seed": self.seed, "salt": self.salt,
                **dict(self.details), "about_caching": self.about_caching,
                "made_in_window": self.made_in_window}

    @classmethod
    def from_json(cls, fields: Fields) -> PromptOrigin:
        known = {"source", "seed", "salt", "about_caching", "made_in_window"}
        details = {key: value for key, value in _plain(fields).items() if key not in known}
        return cls(fields.text("source"), fields.integer("seed", 0),
                   str(fields.raw("salt") or ""), details, fields.flag("about_caching"),
                   fields.integer("made_in_window", 0))


def _plain(fields: Fields) -> dict[str, Scalar]:
    """Every plain value of the object (its nested objects are not details)."""
    found: dict[str, Scalar] = {}
    for key in fields.names():
        value = fields.raw(key)
        if value is None or isinstance(value, (str, int, float, bool)):
            found[key] = value
    return found

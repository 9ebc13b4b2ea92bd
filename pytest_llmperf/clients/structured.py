"""Structured output and tool calls: whether an answer is JSON that the request's JSON schema
accepts, and whether its tool calls call the request's tools with arguments their parameters
schemas accept.

Checked once the answer has ended (never between reads), with the ``jsonschema`` package's
validator for the schema's own draft.  The answer's text is kept only for such requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.clients.base import short

__all__ = ["ToolCall", "schema_problem", "tool_call_problem"]


@dataclass
class ToolCall:
    """One tool call of a streamed answer: its function's name and its arguments' pieces."""

    name: str = ""
    arguments: list[str] = field(default_factory=list)


def schema_problem(text: str, schema: Mapping[str, Any], what: str = "the answer"
                   ) -> str | None:
    """Why ``text`` is not ``what`` ``schema`` accepts (None: it is)."""
    import jsonschema  # only for structured requests

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{what} is not JSON ({exc.msg} at character {exc.pos}): {short(text)}"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "the top level"
    return f"{what} does not match the schema at {where}: {short(error.message)}"


def tool_call_problem(calls: Mapping[int, ToolCall], tools: Sequence[Mapping[str, Any]],
                      text: str) -> str | None:
    """Why the streamed ``calls`` are not calls of ``tools`` (OpenAI function tools) with
    arguments their parameters accept (None: they are); ``text``: what the answer said, for
    the message when it called nothing."""
    functions = {tool.get("function", {}).get("name"): tool.get("function", {})
                 for tool in tools}
    if not calls:
        said = f": {short(text)}" if text.strip() else ""
        return f"the answer called no tool{said}"
    for index, call in sorted(calls.items()):
        if call.name not in functions:
            return (f"tool call {index} calls {call.name!r}, which is not one of the request's "
                    f"tools ({', '.join(repr(name) for name in functions)})")
        schema = functions[call.name].get("parameters") or {"type": "object"}
        problem = schema_problem("".join(call.arguments), schema,
                                 f"the arguments of tool call {index} ({call.name})")
        if problem is not None:
            return problem
    return None

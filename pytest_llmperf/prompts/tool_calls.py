"""Tool calling: prompts whose answers must call one of the request's tools.

:class:`ToolCallPrompts` gives each prompt of another source (by default, tasks of its own that
a tool answers) a list of OpenAI function tools: the client sends them as ``tools`` with
``tool_choice: "required"`` (as OpenAI, vLLM, SGLang and llama.cpp take them), reads the calls
from the stream's ``delta.tool_calls``, checks each call when the answer has ended (a tool of
the request, arguments its parameters schema accepts), and fails an answer that calls nothing
or calls wrongly as ``invalid_output``.  The time to a complete valid call is then the
request's ``e2el_ms``.  The shipped tools' parameters are bounded, so a call fits the suite's
answer length on any model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmperf.prompts.builtin import BuiltinPrompts, Prompt, PromptSource
from pytest_llmperf.results.prompt_origin import PromptOrigin

__all__ = ["SERVICE_TASKS", "SERVICE_TOOLS", "ToolCallPrompts", "openai_only"]


def _function(name: str, description: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool whose parameters are all required and nothing else."""
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": dict(properties),
                       "required": list(properties), "additionalProperties": False}}}


# Two tools of the kind assistants call: the model picks one, with bounded arguments.
SERVICE_TOOLS: tuple[Mapping[str, Any], ...] = (
    _function("get_weather", "The current weather in a city.", {
        "city": {"type": "string", "minLength": 1, "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    }),
    _function("book_table", "Book a table at a restaurant.", {
        "restaurant": {"type": "string", "minLength": 1, "maxLength": 40},
        "people": {"type": "integer", "minimum": 1, "maximum": 20},
        "time": {"type": "string", "minLength": 1, "maxLength": 16},
    }),
)

SERVICE_TASKS: tuple[str, ...] = (
    "What is the weather like in Lisbon right now, in celsius?",
    "Book a table for 4 people at Chez Marie at 19:30.",
    "Is it cold in Oslo today? Tell me in fahrenheit.",
    "Please reserve a table for two at Sakura Garden at 8pm.",
    "I am flying to Nairobi tomorrow: what is the weather there now, in celsius?",
    "Get me a table for 6 at The Old Mill at 12:00.",
)


class ToolCallPrompts:
    """``source``'s prompts (by default :data:`SERVICE_TASKS`), each sent with ``tools`` and
    asking for a call of one of them."""

    def __init__(self, source: PromptSource | None = None, *,
                 tools: Sequence[Mapping[str, Any]] = SERVICE_TOOLS, seed: int = 0) -> None:
        names = [tool.get("function", {}).get("name") for tool in tools]
        if not tools or not all(isinstance(name, str) and name for name in names):
            raise ValueError("tools must be OpenAI function tools, each with "
                             "{'type': 'function', 'function': {'name': ..., 'parameters': ...}}")
        self.source = source or BuiltinPrompts(seed=seed, prompts=SERVICE_TASKS)
        self.tools = tuple(tools)
        self.names = tuple(str(name) for name in names)
        self.about_caching = self.source.about_caching

    def prepare(self, count: int) -> None:
        self.source.prepare(count)

    def next_prompt(self) -> Prompt:
        return dataclasses.replace(self.source.next_prompt(), tools=self.tools)

    def describe(self) -> PromptOrigin:
        origin = self.source.describe()
        return dataclasses.replace(origin, details={
            **dict(origin.details), "tools": ", ".join(self.names)})


def openai_only(prompts: PromptSource) -> str | None:
    """What ``prompts`` ask for that only the OpenAI API's request carries (None: nothing):
    an engine's own client (Ollama's, the in-process one) cannot send it."""
    from pytest_llmperf.prompts.structured import StructuredPrompts

    if isinstance(prompts, StructuredPrompts):
        return "structured output is sent as the OpenAI API's response_format"
    if isinstance(prompts, ToolCallPrompts):
        return "tool calls are asked for with the OpenAI API's tools"
    from pytest_llmperf.prompts.images import ImagePrompts

    if isinstance(prompts, ImagePrompts):
        return "images are sent as the OpenAI API's image_url parts"
    return None

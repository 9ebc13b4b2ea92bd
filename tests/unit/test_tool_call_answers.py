"""Tool calls: the tools go out with ``tool_choice: "required"`` and nothing forced, the calls
are read from the stream's ``delta.tool_calls`` piece by piece (each piece a generated token,
stamped like an answer's), and checked when the answer ends: a call of no tool of the request,
arguments its parameters schema refuses, or no call at all is ``invalid_output``, with why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import Endpoint, StreamingClient, build_payload
from pytest_llmperf.prompts.tool_calls import SERVICE_TOOLS, ToolCallPrompts
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.records import RequestRecord
from tests.unit.test_client import MODEL, ROLE, Replay, chat_chunk, content, sse, with_stub

ARGUMENTS = '{"city": "Lisbon", "unit": "celsius"}'


def call_piece(arguments: str, *, name: str | None = None, index: int = 0) -> bytes:
    """A streamed tool-call delta as llama.cpp and vLLM write it: the call's id, type and name
    with its first piece, only arguments after."""
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name is not None:
        call.update(id=f"call_{index}", type="function")
        call["function"]["name"] = name
    return sse(chat_chunk({"tool_calls": [call]}))


def answer_stream(*pieces: bytes) -> list[bytes]:
    usage = {"choices": [], "model": MODEL, "object": "chat.completion.chunk",
             "usage": {"completion_tokens": 15, "prompt_tokens": 120, "total_tokens": 135}}
    return [ROLE, *pieces, sse(chat_chunk({}, finish_reason="tool_calls")), sse(usage),
            sse("[DONE]")]


def send(*pieces: bytes) -> tuple[RequestRecord, dict[str, Any]]:
    stub = Replay(writes=answer_stream(*pieces), delay_s=0.001)

    async def use(base_url: str) -> RequestRecord:
        async with StreamingClient(Endpoint(base_url, MODEL, ignore_eos=True),
                                   max_tokens=64) as client:
            return await client.send(1, Prompt("weather?", tools=SERVICE_TOOLS))

    record = with_stub(stub, use)
    return record, stub.received[0].body


def test_the_tools_are_sent_with_a_call_required_and_no_forced_length() -> None:
    payload = build_payload(Endpoint("http://h/v1", "m", ignore_eos=True,
                                     min_tokens_field="min_tokens"),
                            Prompt("weather?", tools=SERVICE_TOOLS), 64)
    assert payload["tools"] == [dict(tool) for tool in SERVICE_TOOLS]
    assert payload["tool_choice"] == "required"
    assert "ignore_eos" not in payload and "min_tokens" not in payload
    json.dumps(payload)  # it goes out as JSON


def test_a_call_streamed_in_pieces_is_read_whole_and_valid() -> None:
    record, body = send(call_piece("", name="get_weather"), call_piece(ARGUMENTS[:12]),
                        call_piece(ARGUMENTS[12:]))
    assert body["tool_choice"] == "required" and "ignore_eos" not in body
    assert record.ok, record.error
    assert record.schema_checked and record.finish_reason == "tool_calls"
    assert len(record.chunk_ns) == 3  # the name and each piece of arguments: generated tokens
    assert record.output_tokens == 15


@pytest.mark.parametrize(("pieces", "why"), [
    ((call_piece(ARGUMENTS, name="get_time"),),
     "tool call 0 calls 'get_time', which is not one of the request's tools "
     "('get_weather', 'book_table')"),
    ((call_piece(ARGUMENTS.replace("celsius", "kelvin"), name="get_weather"),),
     "the arguments of tool call 0 (get_weather) does not match the schema at unit: 'kelvin' "
     "is not one of ['celsius', 'fahrenheit']"),
    ((call_piece(ARGUMENTS[:20], name="get_weather"),),
     "the arguments of tool call 0 (get_weather) is not JSON"),
    ((content("It is sunny in Lisbon."),), "the answer called no tool: It is sunny in Lisbon."),
    ((call_piece(ARGUMENTS, name="get_weather"),
      call_piece('{"people": 2}', name="book_table", index=1)),
     "the arguments of tool call 1 (book_table) does not match the schema at the top level"),
])
def test_a_wrong_call_or_none_is_invalid_output(pieces: tuple[bytes, ...], why: str) -> None:
    record, _ = send(*pieces)
    assert record.error_kind == ErrorKind.INVALID_OUTPUT.value
    assert (record.error or "").startswith(why), record.error
    assert record.output_tokens == 15  # still counted: the server generated them


@pytest.mark.parametrize("calls", [
    {"index": 0, "function": "get_weather"},  # function is no object
    [{"index": "0", "function": {"name": "get_weather"}}],  # index is no number
    [{"index": 0, "function": {"name": 7}}],  # name is no string
])
def test_tool_calls_of_a_shape_no_server_sends_are_malformed(calls: object) -> None:
    record, _ = send(sse(chat_chunk({"tool_calls": calls})))
    assert record.error_kind == ErrorKind.MALFORMED.value


def test_tool_call_prompts_carry_the_tools_and_say_so() -> None:
    source = ToolCallPrompts(seed=3)
    prompts = [source.next_prompt() for _ in range(3)]
    assert all(p.tools == SERVICE_TOOLS and p.checked for p in prompts)
    assert len({p.text for p in prompts}) == 3  # each still unique (salted)
    assert source.describe().details["tools"] == "get_weather, book_table"
    with pytest.raises(ValueError, match="OpenAI function tools"):
        ToolCallPrompts(tools=[{"type": "function", "function": {}}])


def test_a_client_that_sends_no_tools_is_refused_before_any_load(tmp_path: Path) -> None:
    import dataclasses

    from pytest_llmperf.bench.bench import Unsupported
    from pytest_llmperf.bench.serve import open_bench
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.settings.resolve import settings_from

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("no window may run")

    served = ServedModel("ollama", "m", None, engine="ollama",
                         open_client=lambda *args: None)  # type: ignore[arg-type,return-value]
    bench = dataclasses.replace(
        open_bench(served, ToolCallPrompts(), None, settings_from(tmp_path)),
        runner=no_load)  # type: ignore[arg-type]
    with pytest.raises(Unsupported, match="OpenAI API's tools"):
        bench.window(users=1, requests=2, prompts=ToolCallPrompts())

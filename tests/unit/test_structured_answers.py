"""Structured output: the schema goes out as ``response_format`` with nothing forced, the
answer is checked against it when it ends (a mismatch or cut-off JSON is ``invalid_output``,
with where it broke), and a structured answer shorter than max_tokens is not "aborted"."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import Endpoint, StreamingClient, build_payload
from pytest_llmperf.clients.structured import schema_problem
from pytest_llmperf.load.runner import finish_records
from pytest_llmperf.prompts.structured import RECORD_SCHEMA, StructuredPrompts
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.record_codec import run_from_json, run_to_json
from pytest_llmperf.results.records import LoadRun, RequestRecord
from tests.unit.test_client import MODEL, ROLE, Replay, chat_chunk, content, sse, with_stub

GOOD = '{"name": "Ada", "age": 36, "city": "London", "interests": ["engines"]}'


def test_the_schema_is_sent_as_response_format_with_no_forced_length() -> None:
    prompt = Prompt("a record", json_schema=RECORD_SCHEMA)
    payload = build_payload(Endpoint("http://h/v1", "m", ignore_eos=True,
                                     min_tokens_field="min_tokens"), prompt, 64)
    assert payload["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": dict(RECORD_SCHEMA), "strict": True}}
    assert "ignore_eos" not in payload and "min_tokens" not in payload
    assert payload["max_tokens"] == 64
    plain = build_payload(Endpoint("http://h/v1", "m", ignore_eos=True), Prompt("hi"), 64)
    assert plain["ignore_eos"] is True and "response_format" not in plain


def test_answers_are_checked_against_the_schema() -> None:
    assert schema_problem(GOOD, RECORD_SCHEMA) is None
    cut = schema_problem(GOOD[:30], RECORD_SCHEMA)
    assert cut is not None and cut.startswith("the answer is not JSON")
    wrong = schema_problem(GOOD.replace("36", "361"), RECORD_SCHEMA)
    assert wrong == ("the answer does not match the schema at age: 361 is greater than the "
                     "maximum of 120")
    missing = schema_problem('{"name": "Ada"}', RECORD_SCHEMA)
    assert missing is not None and "at the top level" in missing and "'age'" in missing


def answer_stream(pieces: list[str]) -> list[bytes]:
    usage = {"choices": [], "model": MODEL, "object": "chat.completion.chunk",
             "usage": {"completion_tokens": 20, "prompt_tokens": 30, "total_tokens": 50}}
    return [ROLE, *(content(p) for p in pieces), sse(chat_chunk({}, finish_reason="stop")),
            sse(usage), sse("[DONE]")]


def send(pieces: list[str]) -> tuple[RequestRecord, dict[str, Any]]:
    stub = Replay(writes=answer_stream(pieces), delay_s=0.001)

    async def use(base_url: str) -> RequestRecord:
        async with StreamingClient(Endpoint(base_url, MODEL, ignore_eos=True),
                                   max_tokens=64) as client:
            return await client.send(1, Prompt("a record", json_schema=RECORD_SCHEMA))

    record = with_stub(stub, use)
    return record, stub.received[0].body


def test_a_valid_structured_answer_completes_though_shorter_than_asked() -> None:
    record, body = send([GOOD[:20], GOOD[20:]])
    assert "response_format" in body and "ignore_eos" not in body
    assert record.ok and record.schema_checked and record.output_tokens == 20
    # 20 of 64 tokens: a forced plain answer is aborted, a structured one ends with its
    # object (the runner tells the judge nothing was forced).
    stored = LoadRun((record,), record.send_ns, record.end_ns, 1, 0)
    forcing = SimpleNamespace(forces_length=True, token_counter=None)
    (finished,) = finish_records(stored, forcing, 64).records  # type: ignore[arg-type]
    assert finished.ok
    plain = dataclasses.replace(record, schema_checked=False)
    assert judge(plain, 64).error_kind == ErrorKind.ABORTED.value
    (read,) = run_from_json(Fields(run_to_json(stored), "result.json")).records
    assert read.schema_checked


def test_an_answer_that_breaks_the_schema_fails_as_invalid_output() -> None:
    record, _ = send([GOOD[:20], GOOD[20:].replace('"London"', "7")])
    assert not record.ok and record.error_kind == ErrorKind.INVALID_OUTPUT.value
    assert record.error == ("the answer does not match the schema at city: 7 is not of "
                            "type 'string'")
    assert record.output_tokens == 20  # still counted: the server generated them


def test_structured_prompts_carry_the_schema_and_say_so() -> None:
    source = StructuredPrompts(seed=3)
    prompts = [source.next_prompt() for _ in range(3)]
    assert all(p.json_schema is RECORD_SCHEMA for p in prompts)
    assert len({p.text for p in prompts}) == 3  # each still unique (salted)
    origin = source.describe()
    assert origin.details["structured"] == "JSON schema (age,city,interests,name)"
    assert asyncio.iscoroutinefunction(StreamingClient.send)


def test_a_client_that_sends_no_schema_is_refused_before_any_load(tmp_path: Path) -> None:
    from pytest_llmperf.bench.bench import Unsupported
    from pytest_llmperf.bench.serve import open_bench
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.settings.resolve import settings_from

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("no window may run")

    # Ollama and the in-process engine bring their own client (open_client).
    served = ServedModel("ollama", "m", None, engine="ollama",
                         open_client=lambda *args: None)  # type: ignore[arg-type,return-value]
    bench = dataclasses.replace(
        open_bench(served, StructuredPrompts(), None, settings_from(tmp_path)),
        runner=no_load)  # type: ignore[arg-type]
    with pytest.raises(Unsupported, match="response_format"):
        bench.window(users=1, requests=2, prompts=StructuredPrompts())

"""After the measured window: token counts the server did not send, then the one rule for what
is a complete answer.  Both run once the window has ended, for every client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.records import RequestRecord, TokenSource

MS = 1_000_000


def answer(*, chunks: int = 3, tokens: int = 8, finish: str | None = "length",
           error: str | None = None) -> RequestRecord:
    chunk_ns = tuple(100 * MS + k * 10 * MS for k in range(chunks))
    return RequestRecord(1, 0, chunk_ns, chunk_ns[-1] if chunk_ns else 0, tokens,
                         TokenSource.USAGE if tokens else None, 20, TokenSource.USAGE, finish,
                         error)


@pytest.mark.parametrize("reason", ["abort", "error", "cancelled", "ABORT"])
def test_an_answer_the_server_aborted_is_a_failed_request(reason: str) -> None:
    judged = judge(answer(finish=reason), forced_tokens=None)
    assert not judged.ok
    assert judged.error == f"the server aborted the answer (finish_reason {reason!r})"


def test_an_answer_shorter_than_the_forced_length_fails() -> None:
    judged = judge(answer(tokens=5, finish="length"), forced_tokens=8)
    assert not judged.ok
    assert judged.error is not None
    assert "5 output tokens of the 8 the request forced" in judged.error


def test_a_short_answer_is_fine_when_the_length_was_not_forced() -> None:
    # Engines that cannot ignore EOS (Ollama, TGI): reported as short answers, not failures.
    record = answer(tokens=5, finish="stop")
    assert judge(record, forced_tokens=None) is record
    assert judge(answer(tokens=8), forced_tokens=8).ok


def test_a_stream_with_no_token_gets_an_error_text() -> None:
    judged = judge(answer(chunks=0, tokens=0, finish="stop"), forced_tokens=None)
    assert judged.error == "the answer carried no token (finish_reason 'stop')"


def test_an_earlier_error_is_kept() -> None:
    record = answer(error="HTTP 503: busy", finish="abort")
    assert judge(record, forced_tokens=8) is record


# --- through the runner: counting happens after the window, a failure stays in its record --


class SaysNoUsage:
    """A sender whose server sends no usage: the records keep their text for the tokenizer."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    async def send(self, request_id: int, prompt: str) -> RequestRecord:
        send_ns = time.perf_counter_ns()
        chunks = []
        for _ in range(3):
            await asyncio.sleep(0.001)
            chunks.append(time.perf_counter_ns())
        return RequestRecord(request_id, send_ns, tuple(chunks), chunks[-1],
                             finish_reason="length",
                             output_text=" ".join(["word"] * self.max_tokens),
                             prompt_text="boom" if request_id == 2 else prompt)


class LoggingCounter:
    def __init__(self) -> None:
        self.calls_ns: list[int] = []

    def count_text(self, text: str) -> int:
        self.calls_ns.append(time.perf_counter_ns())
        return len(text.split())

    def count_prompt(self, prompt: str) -> int:
        self.calls_ns.append(time.perf_counter_ns())
        if prompt == "boom":
            raise ConnectionError("tokenize endpoint went away")
        return 30


def served_without_usage(counter: LoggingCounter, *, forces_length: bool) -> ServedModel:
    @contextlib.asynccontextmanager
    async def open_client(max_tokens: int, timeout_s: float,
                          first_token_timeout_s: float | None) -> AsyncIterator[Any]:
        yield SaysNoUsage(max_tokens)

    return ServedModel("fake", "m", None, "fake engine", token_counter=counter,
                       open_client=open_client, forces_length=forces_length)


def test_missing_counts_are_taken_after_the_window_and_a_failed_count_fails_one_request(
) -> None:
    counter = LoggingCounter()
    result = run_load(served_without_usage(counter, forces_length=True), BuiltinPrompts(seed=0),
                      users=2, requests=6, max_tokens=4)
    records = result.run.records
    # Nothing asked the server's tokenizer while the window ran.
    assert min(counter.calls_ns) > result.run.window_end_ns
    assert [r.request_id for r in records if not r.ok] == [2]
    assert records[2].error is not None and "tokenize endpoint went away" in records[2].error
    good = [r for r in records if r.ok]
    assert all(r.output_tokens == 4 and r.input_tokens == 30 for r in good)
    assert all(r.output_token_source is TokenSource.TOKENIZER for r in good)
    assert all(r.approximate_counts == ("output_tokens",) for r in good)
    assert result.metrics.scalars["error_rate"] == pytest.approx(1 / 6)


def test_a_forced_length_is_checked_against_the_counted_tokens() -> None:
    class Stingy(LoggingCounter):
        def count_text(self, text: str) -> int:
            return 2  # the server stopped after 2 of the 4 forced tokens

    result = run_load(served_without_usage(Stingy(), forces_length=True), BuiltinPrompts(seed=0),
                      users=1, requests=3, max_tokens=4)
    assert result.metrics.scalars["completed"] == 0
    assert all("2 output tokens of the 4" in (r.error or "") for r in result.run.records
               if r.request_id != 2)

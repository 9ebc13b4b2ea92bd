"""The in-process client against fake engines: no torch, no transformers, no model.

Each fake engine answers the way the transformers engine's worker does, from its own thread
or inside ``submit``; the client must turn the events into the record unchanged.
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.clients.inprocess import (
    EndEvent,
    InProcessClient,
    InProcessEngine,
    InProcessRequest,
    TokenEvent,
)
from pytest_llmperf.results.records import RequestRecord, TokenSource


def _run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 30)  # a hang fails the test, never the suite

    return asyncio.run(bounded())


class ThreadEngine:
    """Answers every request from a worker thread: ``tokens`` tokens, then ``finish``."""

    def __init__(self, tokens: int, *, finish_reason: str | None = "length",
                 error: str | None = None, input_tokens: int | None = 3) -> None:
        self.tokens = tokens
        self.finish_reason = finish_reason
        self.error = error
        self.input_tokens = input_tokens
        self.requests: list[InProcessRequest] = []
        self.stamps: list[list[int]] = []  # the worker's readings, per request
        self.threads: list[threading.Thread] = []

    def submit(self, request: InProcessRequest) -> None:
        self.requests.append(request)
        stamps: list[int] = []
        self.stamps.append(stamps)
        thread = threading.Thread(target=self._answer, args=(request, stamps))
        self.threads.append(thread)
        thread.start()

    def _answer(self, request: InProcessRequest, stamps: list[int]) -> None:
        request.input_tokens = self.input_tokens
        for token in range(self.tokens):
            time.sleep(0.001)
            now = time.perf_counter_ns()
            stamps.append(now)
            request.generated += 1
            request.emit(TokenEvent(token, now))
        time.sleep(0.001)
        request.finish(time.perf_counter_ns(), self.finish_reason, self.error)


class SilentEngine:
    """Queues requests and never answers them."""

    def __init__(self) -> None:
        self.requests: list[InProcessRequest] = []

    def submit(self, request: InProcessRequest) -> None:
        self.requests.append(request)


class RefusingEngine:
    """Fails every request inside ``submit``, as a closed engine does."""

    def submit(self, request: InProcessRequest) -> None:
        request.finish(time.perf_counter_ns(), error="the engine stopped")


def _send(engine: InProcessEngine, *, max_tokens: int = 4, timeout_s: float = 10.0,
          prompts: Sequence[str] = ("hello",)) -> list[RequestRecord]:
    async def send_all() -> list[RequestRecord]:
        async with InProcessClient(engine, max_tokens=max_tokens, timeout_s=timeout_s) as client:
            return list(await asyncio.gather(*(client.send(i, p) for i, p in enumerate(prompts))))

    return list(_run(send_all()))


def test_the_record_carries_the_workers_timestamps_unchanged() -> None:
    engine = ThreadEngine(5)
    (record,) = _send(engine, max_tokens=5)
    assert record.ok, record.error
    assert record.chunk_ns == tuple(engine.stamps[0])  # copied, never re-timed by the loop
    assert record.send_ns < record.chunk_ns[0] and record.end_ns > record.chunk_ns[-1]
    assert record.output_tokens == 5 and record.output_token_source is TokenSource.ENGINE
    assert record.input_tokens == 3 and record.input_token_source is TokenSource.ENGINE
    assert record.finish_reason == "length"


def test_the_request_carries_prompt_and_max_tokens_and_is_abandoned_once_answered() -> None:
    engine = ThreadEngine(2)
    records = _send(engine, max_tokens=7, prompts=("a", "b", "c"))
    for thread in engine.threads:
        thread.join(5)
    assert [r.request_id for r in records] == [0, 1, 2]
    assert sorted(r.prompt for r in engine.requests) == ["a", "b", "c"]
    assert {r.max_tokens for r in engine.requests} == {7}
    assert all(r.abandoned and r.done for r in engine.requests)


def test_an_engine_error_becomes_the_records_error() -> None:
    (record,) = _send(ThreadEngine(2, finish_reason=None, error="generate failed: boom",
                                   input_tokens=None))
    assert not record.ok and record.error == "generate failed: boom"
    assert len(record.chunk_ns) == 2  # the tokens streamed before the failure are kept
    assert record.input_tokens is None and record.input_token_source is None


def test_an_answer_without_tokens_is_an_error() -> None:
    (record,) = _send(ThreadEngine(0, finish_reason="stop"))
    assert not record.ok and record.error == "the engine generated no token"
    assert record.output_tokens == 0 and record.output_token_source is None


def test_a_request_failed_inside_submit_returns_at_once() -> None:
    (record,) = _send(RefusingEngine(), timeout_s=30.0)
    assert not record.ok and record.error == "the engine stopped"
    assert record.end_ns - record.send_ns < 5_000_000_000


def test_no_answer_within_the_timeout_is_an_error_and_abandons_the_request() -> None:
    engine = SilentEngine()
    (record,) = _send(engine, timeout_s=0.05)
    assert not record.ok and "no complete answer within 0.05 s" in (record.error or "")
    assert record.end_ns > record.send_ns
    (request,) = engine.requests
    assert request.abandoned  # the engine may now drop it unanswered
    request.emit(TokenEvent(0, time.perf_counter_ns()))  # a late worker: nothing is queued
    assert request.events.empty()


def test_a_cancelled_send_abandons_its_request() -> None:
    engine = SilentEngine()

    async def cancelled() -> None:
        client = InProcessClient(engine, max_tokens=4, timeout_s=60.0)
        task = asyncio.create_task(client.send(0, "x"))
        while not engine.requests:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(cancelled())
    assert engine.requests[0].abandoned


def _request(loop: asyncio.AbstractEventLoop) -> InProcessRequest:
    return InProcessRequest("p", 4, loop, asyncio.Queue())


def test_finish_emits_one_end_event_with_the_input_tokens() -> None:
    async def finish_twice() -> list[Any]:
        request = _request(asyncio.get_running_loop())
        request.input_tokens = 9
        request.finish(1, "stop")
        request.finish(2, error="late")  # a second end is ignored
        await asyncio.sleep(0)
        return [request.events.get_nowait() for _ in range(request.events.qsize())]

    assert _run(finish_twice()) == [EndEvent(1, "stop", None, 9)]


def test_emitting_to_a_closed_loop_abandons_the_request() -> None:
    loop = asyncio.new_event_loop()
    request = _request(loop)
    loop.close()
    request.emit(TokenEvent(0, 1))  # must not raise in the worker thread
    assert request.abandoned
    request.finish(2)
    assert request.done


def _imports(module: object) -> tuple[set[str], set[str]]:
    """(our modules, other modules) that ``module``'s source imports."""
    tree = ast.parse(Path(getattr(module, "__file__", "") or "").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    ours = {name for name in imported if name.startswith("pytest_llmperf")}
    return ours, imported - ours - {"__future__"}


def test_the_module_imports_only_the_standard_library_and_results() -> None:
    import pytest_llmperf.clients.base as base
    import pytest_llmperf.clients.inprocess as module

    ours, others = _imports(module)
    assert ours == {"pytest_llmperf.results.records", "pytest_llmperf.results.errors",
                    "pytest_llmperf.clients.base"}
    base_ours, base_others = _imports(base)
    assert base_ours == {"pytest_llmperf.results.records"}
    assert all(name.split(".")[0] in sys.stdlib_module_names for name in others | base_others)


def test_importing_the_module_loads_nothing_heavy() -> None:
    # What the package itself imports (``import pytest_llmperf``) is its own business.
    code = ("import sys, pytest_llmperf\n"
            "before = set(sys.modules)\n"
            "import pytest_llmperf.clients.inprocess\n"
            "added = {m for m in set(sys.modules) - before if m.startswith('pytest_llmperf')}\n"
            "heavy = {'torch', 'transformers', 'aiohttp'} & set(sys.modules)\n"
            "print(sorted(added), sorted(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    # The package itself imports clients.base (its Prompt is public API).
    assert out.strip() == "['pytest_llmperf.clients.inprocess'] []"

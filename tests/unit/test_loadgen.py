"""Closed-loop load against a fake client: concurrency, counts, warm-up and the window."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, cast

import pytest

from pytest_llmperf.clients.openai import StreamingClient
from pytest_llmperf.load import closed_loop as loadgen
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.records import LoadRun, RequestRecord

MS = 1_000_000


@dataclass
class Call:
    request_id: int
    prompt: str
    in_flight: int  # sends in flight once this one had started, itself included


class FakeClock:
    """A perf_counter_ns that moves only when told to."""

    def __init__(self) -> None:
        self.now_ns = 1_000 * MS

    def perf_counter_ns(self) -> int:
        return self.now_ns


class FakeClient:
    """Answers every request after ``delay_s`` of asyncio sleep, or, with a fake clock,
    after one yield to the event loop and ``step_ns`` of fake time."""

    def __init__(self, delay_s: float = 0.001, clock: FakeClock | None = None,
                 step_ns: int = 10 * MS) -> None:
        self.delay_s = delay_s
        self.clock = clock
        self.step_ns = step_ns
        self.in_flight = 0
        self.calls: list[Call] = []  # in the order sent
        self.records: list[RequestRecord] = []  # in the order answered

    def _now(self) -> int:
        return self.clock.now_ns if self.clock else time.perf_counter_ns()

    async def send(self, request_id: int, prompt: str) -> RequestRecord:
        self.in_flight += 1
        self.calls.append(Call(request_id, prompt, self.in_flight))
        send_ns = self._now()
        try:
            if self.clock is None:
                await asyncio.sleep(self.delay_s)
            else:
                await asyncio.sleep(0)
                self.clock.now_ns += self.step_ns
        finally:
            self.in_flight -= 1
        end_ns = self._now()
        record = RequestRecord(
            request_id, send_ns, chunk_ns=(end_ns,), end_ns=end_ns, output_tokens=1
        )
        self.records.append(record)
        return record

    @property
    def max_in_flight(self) -> int:
        return max((c.in_flight for c in self.calls), default=0)


def run(client: FakeClient, **kwargs: Any) -> LoadRun:
    coro = loadgen.run_closed_loop(cast(StreamingClient, client), BuiltinPrompts(seed=1), **kwargs)
    return asyncio.run(coro)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Fake time for the load generator (its deadline and window) and the fake client."""
    fake = FakeClock()
    monkeypatch.setattr(loadgen, "time", fake)
    return fake


# --- concurrency and counts ----------------------------------------------------------------


def test_users_run_concurrently() -> None:
    client = FakeClient()
    result = run(client, users=4, requests=12)
    assert client.max_in_flight == 4
    assert result.concurrency == 4
    assert len(client.calls) == 12


def test_one_user_sends_one_at_a_time_in_order() -> None:
    client = FakeClient()
    result = run(client, users=1, requests=5)
    assert client.max_in_flight == 1
    assert [c.request_id for c in client.calls] == [0, 1, 2, 3, 4]
    sends = [r.send_ns for r in result.records]
    ends = [r.end_ns for r in result.records]
    assert all(end <= next_send for end, next_send in zip(ends, sends[1:], strict=False))


def test_more_users_than_requests() -> None:
    client = FakeClient()
    result = run(client, users=8, requests=3)
    assert client.max_in_flight == 3
    assert [r.request_id for r in result.records] == [0, 1, 2]


@pytest.mark.parametrize(("users", "requests"), [(1, 1), (3, 10), (4, 4), (5, 17)])
def test_exactly_the_requested_records(users: int, requests: int) -> None:
    client = FakeClient()
    result = run(client, users=users, requests=requests)
    assert [r.request_id for r in result.records] == list(range(requests))
    assert len(client.calls) == requests
    # every prompt is new
    assert len({c.prompt for c in client.calls}) == requests
    assert result.warmup_requests == 0
    assert result.window_start_ns <= min(r.send_ns for r in result.records)
    assert result.window_end_ns == max(r.end_ns for r in result.records)


def test_zero_requests_gives_an_empty_window() -> None:
    client = FakeClient()
    result = run(client, users=2, requests=0)
    assert result.records == ()
    assert client.calls == []
    assert result.window_end_ns == result.window_start_ns
    assert result.duration_s == 0.0


# --- warm-up -------------------------------------------------------------------------------


def test_warmup_first_and_not_measured() -> None:
    client = FakeClient()
    result = run(client, users=2, warmup=3, requests=5)
    assert len(client.calls) == 3 + 5
    # the three warm-up requests were sent and answered before any measured one
    assert [c.request_id for c in client.calls[:3]] == [0, 1, 2]
    warmup_records, measured_records = client.records[:3], client.records[3:]
    assert all(r is not w for r in result.records for w in warmup_records)
    assert {id(r) for r in result.records} == {id(r) for r in measured_records}
    assert [r.request_id for r in result.records] == [0, 1, 2, 3, 4]
    assert result.warmup_requests == 3
    # the window opens after the last warm-up answer, before the first measured send
    assert result.window_start_ns >= max(w.end_ns for w in warmup_records)
    assert result.window_start_ns <= min(r.send_ns for r in result.records)
    # warm-up prompts are not reused for measured requests
    assert len({c.prompt for c in client.calls}) == 8


def test_warmup_runs_at_the_same_concurrency() -> None:
    client = FakeClient()
    run(client, users=4, warmup=4, requests=1)
    assert max(c.in_flight for c in client.calls[:4]) == 4


# --- duration mode -------------------------------------------------------------------------


def test_duration_one_user(clock: FakeClock) -> None:
    # each request takes 10 ms of fake time; a 50 ms run starts them at 0, 10, 20, 30, 40 ms
    # and none at 50 ms
    client = FakeClient(clock=clock, step_ns=10 * MS)
    result = run(client, users=1, duration_s=0.05)
    start = result.window_start_ns
    assert [r.send_ns - start for r in result.records] == [0, 10 * MS, 20 * MS, 30 * MS, 40 * MS]
    assert len(client.calls) == 5
    assert result.window_end_ns == start + 50 * MS


def test_duration_no_request_starts_after_the_deadline(clock: FakeClock) -> None:
    client = FakeClient(clock=clock, step_ns=10 * MS)
    result = run(client, users=3, duration_s=0.05)
    deadline = result.window_start_ns + 50 * MS
    assert result.records
    assert all(r.send_ns < deadline for r in result.records)
    # every request sent is measured, ids without gaps, and those in flight at the deadline
    # were finished and counted: the window ends after the deadline
    assert len(client.calls) == len(result.records)
    assert [r.request_id for r in result.records] == list(range(len(result.records)))
    assert result.window_end_ns > deadline
    assert result.window_end_ns == max(r.end_ns for r in result.records)


def test_duration_counts_from_the_end_of_warmup(clock: FakeClock) -> None:
    # warm-up takes 2 x 10 ms; the 50 ms deadline counts from after it: again 5 requests
    client = FakeClient(clock=clock, step_ns=10 * MS)
    result = run(client, users=1, warmup=2, duration_s=0.05)
    assert len(client.calls) == 2 + 5
    assert len(result.records) == 5
    assert result.window_start_ns == client.records[1].end_ns


def test_zero_duration_sends_nothing() -> None:
    client = FakeClient()
    result = run(client, users=2, duration_s=0)
    assert result.records == ()
    assert client.calls == []
    assert result.window_end_ns == result.window_start_ns


# --- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 0, "requests": 1}, "users must be >= 1"),
        ({"users": -2, "requests": 1}, "users must be >= 1"),
        ({"users": 1, "requests": 1, "duration_s": 1.0}, "exactly one of"),
        ({"users": 1}, "exactly one of"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    client = FakeClient()
    with pytest.raises(ValueError, match=message):
        run(client, **kwargs)
    assert client.calls == []

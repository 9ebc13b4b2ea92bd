"""Open-loop load against a fake client: the schedule is kept, warm-up leads into the window,
the concurrency cap holds and its wait is measured as slip; and the pacing figures."""

from __future__ import annotations

import asyncio
import time

import pytest

from pytest_llmperf.load.open_loop import peak_in_flight, run_open_loop
from pytest_llmperf.load.shapes import arrival_offsets
from pytest_llmperf.observe.health import judge_health, send_lateness
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.pacing import overload, pacing_scalars
from pytest_llmperf.results.records import LoadRun, RequestRecord

MS = 1_000_000


class SleepingClient:
    """Answers each request with one token after ``delay_s``; counts what is in flight."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.in_flight = 0
        self.peak = 0
        self.ids: list[int] = []

    async def send(self, request_id: int, prompt: str) -> RequestRecord:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.ids.append(request_id)
        send = time.perf_counter_ns()
        await asyncio.sleep(self.delay_s)
        first = time.perf_counter_ns()
        await asyncio.sleep(self.delay_s / 10)
        end = time.perf_counter_ns()
        self.in_flight -= 1
        return RequestRecord(request_id, send, (first, end), end, 2, input_tokens=5)


def run(shape: LoadShape, client: SleepingClient, **kwargs: object) -> LoadRun:
    return asyncio.run(run_open_loop(client, BuiltinPrompts(seed=0), shape=shape,
                                     **kwargs))  # type: ignore[arg-type]


def test_requests_are_sent_on_their_absolute_schedule() -> None:
    shape = LoadShape.open(50.0, seed=1)
    loaded = run(shape, SleepingClient(0.05), requests=40, warmup=5)
    offsets = arrival_offsets(shape, 45)
    assert [r.request_id for r in loaded.records] == list(range(40))
    # Each measured request was due at its place in the one schedule, warm-up first.
    for record, offset in zip(loaded.records, offsets[5:], strict=True):
        due_s = (record.scheduled_ns - loaded.window_start_ns) / 1e9
        assert due_s == pytest.approx(offset - offsets[5], abs=1e-6)
        assert record.send_ns >= record.scheduled_ns
    # Sent close to when due: no cap, a client with nothing else to do.
    slips = sorted(r.send_ns - r.scheduled_ns for r in loaded.records)
    assert slips[len(slips) // 2] < 20 * MS
    assert loaded.warmup_requests == 5


def test_warm_up_arrivals_run_before_the_window_and_are_not_recorded() -> None:
    client = SleepingClient(0.01)
    loaded = run(LoadShape.open(100.0, arrivals="constant"), client, requests=10, warmup=3)
    assert sorted(client.ids) == [-3, -2, -1, *range(10)]
    assert len(loaded.records) == 10
    assert min(r.scheduled_ns for r in loaded.records) == loaded.window_start_ns


def test_the_concurrency_cap_holds_and_the_wait_behind_it_is_slip() -> None:
    client = SleepingClient(0.05)
    # 20 at once, 4 in flight at most: the last ones wait about 4 rounds of 55 ms.
    loaded = run(LoadShape.open(float("inf"), max_concurrency=4), client, requests=20)
    assert client.peak == 4
    assert peak_in_flight(loaded.records) == 4 == loaded.concurrency
    metrics = summarize(loaded)
    slips = metrics.distributions["schedule_slip_ms"]
    assert max(slips) > 3 * 50  # waited behind the cap
    # Measured from the schedule, the wait counts; measured from the send, it does not.
    assert max(metrics.distributions["ttft_from_schedule_ms"]) > 4 * 50
    assert max(metrics.distributions["ttft_ms"]) < 2 * 50 + 50
    # The wait is the server's doing: the client's own lateness leaves it out, so a server
    # behind a cap does not make the client look late (observe.health).
    assert max(r.queued_ns for r in loaded.records) > 3 * 50 * MS
    late, _ = send_lateness(loaded.records)
    assert max(late) < 20, late
    assert judge_health({}, *send_lateness(loaded.records)).client_bound == ()


def test_a_duration_bounds_the_arrivals_not_the_answers() -> None:
    loaded = run(LoadShape.open(40.0, arrivals="constant"), SleepingClient(0.02),
                 duration_s=0.5)
    # Arrivals at 0, 25 ms, ... < 500 ms: 20 of them.
    assert len(loaded.records) == 20
    assert max(r.scheduled_ns for r in loaded.records) - loaded.window_start_ns < 500 * MS


def test_open_loop_refuses_a_closed_shape_and_an_infinite_rate_with_a_duration() -> None:
    with pytest.raises(ValueError, match="open-loop shape"):
        run(LoadShape.closed(2), SleepingClient(0.01), requests=2)
    with pytest.raises(ValueError, match="give a request count, not a duration"):
        run(LoadShape.open(float("inf")), SleepingClient(0.01), duration_s=1.0)


def window(first_token_waits_s: list[float], gap_s: float, done_s: float) -> LoadRun:
    """Requests due ``gap_s`` apart whose first token came ``wait`` after they were due, and
    a window that ends ``done_s`` after the first was due."""
    records = []
    for i, wait in enumerate(first_token_waits_s):
        due = int(i * gap_s * 1e9)
        first = due + int(wait * 1e9)
        records.append(RequestRecord(i, due, (first, first + MS), first + MS, 2,
                                     scheduled_ns=due))
    return LoadRun(tuple(records), 0, int(done_s * 1e9), 1, 0)


def test_a_server_that_keeps_up_is_not_overloaded() -> None:
    waits = [0.2 + 0.05 * ((i * 7) % 5 - 2) for i in range(40)]  # noisy, no trend
    loaded = window(waits, 0.5, 20.5)
    scalars = summarize(loaded).scalars
    assert scalars["offered_rate"] == pytest.approx(2.0)
    assert abs(scalars["queue_growth"]) < 0.01
    assert overload(loaded, scalars) is None


def test_a_growing_queue_is_overloaded_and_says_by_how_much() -> None:
    # Due 0.5 s apart, each waits 0.5 s longer than the one before: the wait grows 1 s per
    # second of schedule; 40 answers in a 40 s window is 1 req/s against 2 offered.
    waits = [0.2 + 0.5 * i for i in range(40)]
    loaded = window(waits, 0.5, 40.0)
    scalars = summarize(loaded).scalars
    assert scalars["queue_growth"] == pytest.approx(1.0)
    message = overload(loaded, scalars)
    assert message is not None
    assert message.startswith("overloaded: offered 2 req/s, sustained 1 req/s; the time")
    assert "grew by 1.00 s every second" in message


def test_a_closed_loop_has_no_pacing_figures() -> None:
    records = tuple(RequestRecord(i, i * MS, (i * MS + MS,), i * MS + MS, 1) for i in range(10))
    loaded = LoadRun(records, 0, 11 * MS, 1, 0)
    assert pacing_scalars(loaded) == {}
    assert overload(loaded, summarize(loaded).scalars) is None
    assert summarize(loaded).distributions["schedule_slip_ms"] == ()


def test_a_plain_stop_waits_for_what_is_in_flight_and_a_verdict_stop_abandons_it() -> None:
    """Overloaded (each answer takes 0.5 s, 100 arrivals a second), a stop after the first
    answer ends the arrivals; a plain stop then waits for the 50 or so requests sent, a
    VerdictStop cancels them and the window holds only what was answered."""
    from pytest_llmperf.load.closed_loop import VerdictStop

    def rule(done: object) -> str:
        return "clearly failed"

    shape = LoadShape.open(100.0, arrivals="constant")
    waited = run(shape, SleepingClient(0.5), requests=200, stop=rule)
    began = time.perf_counter()
    client = SleepingClient(0.5)
    abandoned = run(shape, client, requests=200, stop=VerdictStop(rule))
    took_s = time.perf_counter() - began
    assert len(waited.records) >= 45 and waited.stopped_early == "clearly failed"
    assert 1 <= len(abandoned.records) < 10 and all(r.ok for r in abandoned.records)
    assert client.in_flight == len(client.ids) - len(abandoned.records) > 40  # cancelled
    assert abandoned.stopped_early is not None
    assert abandoned.stopped_early.startswith("clearly failed; ")
    said = int(abandoned.stopped_early.split("; ")[1].split()[0])
    assert said - 1 <= client.in_flight <= said  # the last may have been due, not yet sent
    assert took_s < 1.0  # not the 0.5 s of each of the 50 in flight, nor their drain

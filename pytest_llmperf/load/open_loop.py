"""Open loop: requests arrive on a schedule fixed before the first one, whatever the server does.

The schedule (:func:`pytest_llmperf.load.shapes.arrival_offsets`) holds the warm-up arrivals
first and the measured ones after them, at the same pace: the measured window then starts in
the steady state the rate makes, not on an idle server.  It starts at the first measured
arrival's scheduled time and ends when the last measured answer ends.

Each request is launched at its absolute scheduled time (never "a gap after the last send"), and
its record keeps that time (``scheduled_ns``) beside the time it was really sent (``send_ns``):
the difference is the schedule slip, the wait behind ``max_concurrency`` (or, for a turn of a
conversation, ``Prompt.session``, for the answer to the turn before it) plus the client's own
lateness.  A client too slow to keep the pace shows slip; it cannot silently offer less.

A deadline (``cut_after_s``, from the first arrival, warm-up included) bounds the run: no
arrival is sent after it, and the requests still in flight are cut and recorded as failed
``timeout`` requests.

A schedule holds at most :data:`MAX_ARRIVALS` arrivals: a duration at an absurd rate (1e9 req/s
for a minute) is offered as a burst of that many, and the window says what it did not offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_llmperf.clients.base import RequestSender
from pytest_llmperf.load.closed_loop import (
    StopRule,
    VerdictStop,
    WindowObserver,
    check_every,
    cut_record,
    deadline_reason,
)
from pytest_llmperf.load.shapes import arrival_offsets, staged_arrivals
from pytest_llmperf.prompts.builtin import PromptSource
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import LoadRun, RequestRecord

__all__ = ["MAX_ARRIVALS", "Share", "peak_in_flight", "run_open_loop", "schedule"]

_NS = 1_000_000_000
# The most arrivals one window schedules, warm-up included: far more than a client offers in
# a window of minutes (each is a task, a record, a prompt), far less than memory holds.
MAX_ARRIVALS = 1_000_000


@dataclass(frozen=True)
class Share:
    """One client process's part of a schedule offered from several (load.processes): it
    sends the ``arrivals`` (indices, in order) of the one schedule, whose arrival 0 is due at
    ``base_ns`` (``perf_counter_ns``: the machine's monotonic clock, the same in every
    process)."""

    arrivals: tuple[int, ...]
    base_ns: int


def schedule(shape: LoadShape, warmup: int, requests: int | None,
              duration_s: float | None) -> tuple[list[float], int]:
    """Offsets of every arrival (warm-up first) and how many are measured; for a duration,
    no more than :data:`MAX_ARRIVALS` (or the warm-up and one) in all.  A replayed trace
    offers its own arrivals, cut at ``requests`` or ``duration_s`` where given; staged rates
    their stages' (``requests`` and ``duration_s`` are not theirs to cut), after warm-up
    arrivals at the first stage's mean rate."""
    if shape.stages:
        staged = staged_arrivals(shape)[0]
        gap = 1.0 / shape.stages[0].mean_rate
        return [*(i * gap for i in range(warmup)), *(warmup * gap + o for o in staged)], \
            len(staged)
    if shape.arrivals == "trace":  # a recording holds what it holds
        offsets = list(shape.offsets[:warmup + requests] if requests is not None
                       else shape.offsets)
        if duration_s is not None and len(offsets) > warmup:
            offsets = [o for o in offsets if o - offsets[warmup] < duration_s]
        return offsets, max(0, len(offsets) - warmup)
    if requests is not None:
        return arrival_offsets(shape, warmup + requests), requests
    assert duration_s is not None and shape.rate is not None
    if math.isinf(shape.rate):
        raise ValueError("an infinite rate sends everything at once: give a request count, "
                         "not a duration")
    # Enough arrivals that the measured ones almost surely outlast the duration; the schedule
    # is cut at the duration (seeded, so the same seed cuts the same schedule).  Counted in
    # floats up to the cap: rate * duration may be past any int numpy takes, or infinite.
    cap = max(MAX_ARRIVALS, warmup + 1)
    expected = shape.rate * duration_s
    margin = 6 * math.sqrt(expected / min(shape.burstiness, 1.0)) + 8
    count = int(min(warmup + expected + margin, cap))
    while True:
        offsets = arrival_offsets(shape, count)
        start = offsets[warmup] if warmup < len(offsets) else 0.0
        if offsets[-1] - start >= duration_s or count >= cap:
            measured = sum(1 for o in offsets[warmup:] if o - start < duration_s)
            return offsets[:warmup + measured], measured
        count = min(count * 2, cap)


def _beyond_cap(shape: LoadShape, duration_s: float | None, offsets: Sequence[float]) -> str:
    """Why a duration's schedule offers fewer arrivals than its rate (empty: it does not)."""
    if duration_s is None or shape.rate is None or len(offsets) < MAX_ARRIVALS:
        return ""
    wanted = shape.rate * duration_s
    if wanted < len(offsets):
        return ""
    return (f"{shape.rate:g} req/s for {duration_s:g} s is {wanted:.3g} arrivals, more than a "
            f"window schedules ({MAX_ARRIVALS}): the first {len(offsets)} were offered, about "
            f"at once; offer a lower rate, or a request count")


async def run_open_loop(
    client: RequestSender,
    prompts: PromptSource,
    *,
    shape: LoadShape,
    requests: int | None = None,
    duration_s: float | None = None,
    warmup: int = 0,
    observers: Sequence[WindowObserver] = (),
    stop: StopRule | None = None,
    cut_after_s: float | None = None,
    share: Share | None = None,
) -> LoadRun:
    """Offer ``shape``'s arrivals: ``requests`` measured ones, or as many as are scheduled in
    ``duration_s`` seconds, after ``warmup`` warm-up arrivals at the same pace.  ``stop`` may
    cancel the arrivals still to come (those sent are answered and counted; a
    :class:`VerdictStop` abandons them: they are not in the window).  With a
    ``share``, only that share of the arrivals is sent (the window is the schedule's all the
    same)."""
    if not shape.is_open:
        raise ValueError("run_open_loop needs an open-loop shape (a rate)")
    if (requests is None) == (duration_s is None):
        raise ValueError("give exactly one of requests or duration_s")
    offsets, measured = schedule(shape, warmup, requests, duration_s)
    capped = _beyond_cap(shape, duration_s, offsets)
    limit = (asyncio.Semaphore(shape.max_concurrency) if shape.max_concurrency
             else contextlib.nullcontext())

    answered: list[RequestRecord] = []
    stopped: list[str] = []
    abandoned: set[int] = set()
    every = check_every(measured)

    # A conversation's turns go one after another: each waits for the answer to the one
    # scheduled before it (a replayed trace's sessions); that wait, like one for a
    # max_concurrency slot, is the server's doing, not the client's lateness.
    last_turn: dict[str, asyncio.Event] = {}

    async def one(request_id: int, due_ns: int) -> RequestRecord:
        sent_ns = launched_ns = time.perf_counter_ns()
        prompt = prompts.next_prompt()  # now, in schedule order: a session's turns chain up
        previous = last_turn.get(prompt.session) if prompt.session is not None else None
        answered_turn = asyncio.Event()
        if prompt.session is not None:
            last_turn[prompt.session] = answered_turn
        try:
            if previous is not None:
                await previous.wait()
            async with limit:
                sent_ns = time.perf_counter_ns()
                record = await client.send(request_id, prompt)
        except asyncio.CancelledError:  # the deadline: this request counts as a timeout
            if cut_after_s is None or request_id in abandoned:
                raise
            record = cut_record(request_id, sent_ns, cut_after_s)
        finally:
            answered_turn.set()
        waited = shape.max_concurrency or previous is not None
        queued_ns = sent_ns - launched_ns if waited else 0  # nothing to wait for: no wait
        record = dataclasses.replace(record, scheduled_ns=due_ns, queued_ns=queued_ns)
        if request_id >= 0 and stop is not None:
            answered.append(record)
            if not stopped and len(answered) % every == 0:
                reason = stop(answered)
                if reason:
                    stopped.append(reason)
        return record

    base_ns = time.perf_counter_ns() if share is None else share.base_ns
    ours: Sequence[int] = (range(len(offsets)) if share is None
                           else [i for i in share.arrivals if i < len(offsets)])
    cut_ns = None if cut_after_s is None else base_ns + round(cut_after_s * _NS)
    start_ns = base_ns + round(offsets[warmup] * _NS) if measured else base_ns
    warm: list[asyncio.Task[RequestRecord]] = []
    tasks: list[asyncio.Task[RequestRecord]] = []
    ids: list[int] = []  # the measured tasks' request ids
    started = False
    try:
        for index in ours:
            if stopped:
                break
            due_ns = base_ns + round(offsets[index] * _NS)
            if cut_ns is not None and due_ns >= cut_ns:  # never sent; the wait below cuts
                stopped.append(f"the deadline of {cut_after_s:g} s (--llmperf-window-timeout) "
                               f"passed before {len(ours) - ours.index(index)} arrival(s) "
                               "were due: they were not sent")
                break
            delay_ns = due_ns - time.perf_counter_ns()
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / _NS)
            if index >= warmup and not started:
                started = True
                for observer in observers:
                    observer.window_started()
            request_id = index - warmup if index >= warmup else -1 - index
            task = asyncio.create_task(one(request_id, due_ns))
            (tasks if index >= warmup else warm).append(task)
            if index >= warmup:
                ids.append(request_id)
        if not started:
            started = True
            for observer in observers:
                observer.window_started()
        if stopped and isinstance(stop, VerdictStop):
            _abandon(tasks, ids, abandoned, stopped)
        if cut_ns is not None:
            _, late = await asyncio.wait(
                [*warm, *tasks], timeout=max(0.0, (cut_ns - time.perf_counter_ns()) / _NS))
            for task in late:
                task.cancel()  # each records itself as cut (see one())
            if late and cut_after_s is not None and not stopped:
                stopped.append(deadline_reason(cut_after_s, len(late)))
        records = await _answered(tasks, abandoned)
        await asyncio.gather(*warm)
    finally:
        for task in (*warm, *tasks):
            task.cancel()
        if started:
            for observer in reversed(observers):
                observer.window_ended()
    end_ns = max((r.end_ns for r in records), default=start_ns)
    return LoadRun(
        records=tuple(sorted(records, key=lambda r: r.request_id)),
        window_start_ns=start_ns,
        window_end_ns=max(end_ns, start_ns),
        concurrency=peak_in_flight(records),
        warmup_requests=warmup,
        stopped_early="; ".join([*([capped] if capped else []), *stopped[:1]]) or None,
    )


async def _answered(tasks: Sequence[asyncio.Task[RequestRecord]],
                    abandoned: set[int]) -> list[RequestRecord]:
    """The measured requests' records, less those abandoned."""
    if not abandoned:  # the first error raises at once, the others then cancelled
        return list(await asyncio.gather(*tasks))
    records = []
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, asyncio.CancelledError):
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        records.append(outcome)
    return records


def _abandon(tasks: Sequence[asyncio.Task[RequestRecord]], ids: Sequence[int],
             abandoned: set[int], stopped: list[str]) -> None:
    """Cancel the measured requests still in flight after a :class:`VerdictStop`."""
    for request_id, task in zip(ids, tasks, strict=True):
        if not task.done():
            abandoned.add(request_id)
            task.cancel()
    if abandoned:
        stopped[0] += (f"; {len(abandoned)} request(s) in flight were abandoned, not waited "
                       "for (the verdict was decided)")


def peak_in_flight(records: Sequence[RequestRecord]) -> int:
    """The most measured requests that were in flight at once (at least 1)."""
    events = sorted([(r.send_ns, 1) for r in records] + [(r.end_ns, -1) for r in records],
                    key=lambda event: (event[0], event[1]))
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return max(peak, 1)

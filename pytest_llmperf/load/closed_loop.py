"""Closed loop: N users, each sending its next request when its last one ends.

Warm-up requests run first, at the same concurrency, and are thrown away; the measured window
starts after the last warm-up answer and ends when the last measured answer ends.

A deadline (``cut_after_s``, counted from the first warm-up request) bounds the whole run: at
the deadline the requests still in flight are cut and recorded as failed ``timeout`` requests
(never dropped: a hung server must not look fast), and no request starts after it.  With a ramp,
user ``i`` of N sends its first measured request ``i * ramp_s / N`` seconds into the window.
Users are plain asyncio tasks sharing one client: nothing serialises their requests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from pytest_llmperf.clients.base import RequestSender
from pytest_llmperf.prompts.builtin import PromptSource
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.records import LoadRun, RequestRecord

__all__ = ["StopRule", "VerdictStop", "WindowObserver", "cut_record", "deadline_reason",
           "run_closed_loop"]

# Told the measured requests completed so far; a reason to send no more, or None.  Asked
# after every ``check_every(planned)``-th answer, so its cost stays out of the hot path.
StopRule = Callable[[Sequence[RequestRecord]], "str | None"]


class VerdictStop:
    """A stop rule whose reason decides the window's verdict however the requests still in
    flight turn out (a capacity probe that has clearly failed, or can no longer pass).  An open
    loop stopped by it abandons those requests instead of waiting for them: an overloaded one
    has a queue of them that would take the server tens of seconds to drain."""

    def __init__(self, rule: StopRule) -> None:
        self.rule = rule

    def __call__(self, done: Sequence[RequestRecord]) -> str | None:
        return self.rule(done)


def check_every(planned: int | None) -> int:
    return max(1, (planned or 64) // 32)


def cut_record(request_id: int, sent_ns: int, cut_after_s: float) -> RequestRecord:
    """A request still in flight at the run's deadline: a failed request of kind timeout."""
    return RequestRecord(
        request_id=request_id, send_ns=sent_ns, end_ns=time.perf_counter_ns(),
        error=f"cut at the window's deadline of {cut_after_s:g} s (--llmperf-window-timeout) "
              "with no complete answer", error_kind=ErrorKind.TIMEOUT.value)


def deadline_reason(cut_after_s: float, cut: int) -> str:
    return (f"the deadline of {cut_after_s:g} s (--llmperf-window-timeout) passed: "
            f"{cut} request(s) in flight were cut and count as timeouts")


class WindowObserver(Protocol):
    """Told when the measured window starts and ends (after warm-up, before the first measured
    request; after the last measured answer).  Calls must return quickly: samplers that watch
    the window run in their own threads."""

    def window_started(self) -> None: ...

    def window_ended(self) -> None: ...


async def run_closed_loop(
    client: RequestSender,
    prompts: PromptSource,
    *,
    users: int,
    requests: int | None = None,
    duration_s: float | None = None,
    warmup: int = 0,
    ramp_s: float = 0.0,
    observers: Sequence[WindowObserver] = (),
    stop: StopRule | None = None,
    cut_after_s: float | None = None,
) -> LoadRun:
    """Measure ``users`` concurrent users for ``requests`` requests or ``duration_s`` seconds.

    With a duration, no request starts after the deadline; those in flight are finished and
    counted, so the window can end a little after the deadline.  ``stop`` may end the window
    early the same way (the run's ``stopped_early`` says why).
    """
    if users < 1:
        raise ValueError(f"users must be >= 1, got {users}")
    if (requests is None) == (duration_s is None):
        raise ValueError("give exactly one of requests or duration_s")
    cut = None if cut_after_s is None else _Cut(cut_after_s)
    stopped: list[str] = []
    if warmup:
        await _phase(client, prompts, users, requests=warmup, deadline_ns=None, cut=cut,
                     stopped=stopped)
    for observer in observers:
        observer.window_started()
    start_ns = time.perf_counter_ns()
    deadline_ns = None if duration_s is None else start_ns + int(duration_s * 1e9)
    try:
        records = await _phase(client, prompts, users, requests=requests,
                               deadline_ns=deadline_ns, ramp_s=ramp_s, stop=stop,
                               stopped=stopped, cut=cut)
    finally:
        for observer in reversed(observers):
            observer.window_ended()
    end_ns = max((r.end_ns for r in records), default=start_ns)
    return LoadRun(
        records=tuple(sorted(records, key=lambda r: r.request_id)),
        window_start_ns=start_ns,
        window_end_ns=max(end_ns, start_ns),
        concurrency=users,
        warmup_requests=warmup,
        stopped_early=stopped[0] if stopped else None,
    )


class _Cut:
    """The run's deadline: ``cut_after_s`` from its creation (the first warm-up request)."""

    def __init__(self, cut_after_s: float) -> None:
        self.after_s = cut_after_s
        self.at = time.monotonic() + cut_after_s

    def remaining_s(self) -> float:
        return max(0.0, self.at - time.monotonic())


async def _phase(
    client: RequestSender,
    prompts: PromptSource,
    users: int,
    *,
    requests: int | None,
    deadline_ns: int | None,
    ramp_s: float = 0.0,
    stop: StopRule | None = None,
    stopped: list[str] | None = None,
    cut: _Cut | None = None,
) -> list[RequestRecord]:
    ids = itertools.count()
    records: list[RequestRecord] = []
    every = check_every(requests)

    def next_id() -> int | None:
        if stopped:
            return None
        request_id = next(ids)
        if requests is not None and request_id >= requests:
            return None
        if deadline_ns is not None and time.perf_counter_ns() >= deadline_ns:
            return None
        return request_id

    async def user(number: int) -> None:
        if ramp_s:
            await asyncio.sleep(number * ramp_s / users)
        while (request_id := next_id()) is not None:
            sent_ns = time.perf_counter_ns()
            try:
                records.append(await client.send(request_id, prompts.next_prompt()))
            except asyncio.CancelledError:  # the deadline: this request counts as a timeout
                if cut is None:
                    raise
                records.append(cut_record(request_id, sent_ns, cut.after_s))
                return
            if stop is not None and stopped is not None and not stopped \
                    and len(records) % every == 0:
                reason = stop(records)
                if reason:
                    stopped.append(reason)

    tasks = [asyncio.create_task(user(number)) for number in range(users)]
    try:
        _, late = await asyncio.wait(tasks, timeout=None if cut is None else cut.remaining_s())
        if late and cut is not None:
            before = len(records)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if stopped is not None and not stopped:
                stopped.append(deadline_reason(cut.after_s, len(records) - before))
        for task in tasks:
            task.result()  # a user's own failure (a bug) is raised, not lost
    finally:
        for task in tasks:
            task.cancel()
    return records

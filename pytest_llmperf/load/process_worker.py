"""A client process of a load offered from several (load.processes): what it does from the
fork to its result.

It offers its share (closed loop: its users and requests; open loop: its arrivals of the one
schedule), meets the other workers and the test process at the window's start and end, takes
its prompts as dealt and asks for more when they run out, counts its answers into the shared
tally, and sends its records and its own health figures back, or its error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from pytest_llmperf.clients.base import RequestSender
from pytest_llmperf.load.closed_loop import StopRule, run_closed_loop
from pytest_llmperf.load.event_loop import run_client
from pytest_llmperf.load.open_loop import Share, run_open_loop
from pytest_llmperf.observe.health import HealthWatch
from pytest_llmperf.prompts.builtin import Prompt
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.prompt_origin import PromptOrigin
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.settings.groups import TimeLimits

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel

__all__ = ["REASON_BYTES", "WORKER_FIGURES", "Job", "split", "work"]

# The health figures each worker reads about itself; the run's are the worst worker's.
WORKER_FIGURES = ("loop_lag_ms_p99", "loop_lag_ms_max", "client_cpu_pct")
REASON_BYTES = 4096  # room for the first stop rule's reason
_PR_SET_PDEATHSIG = 1


def split(total: int, count: int) -> list[int]:
    """``total`` shared between ``count`` workers the way ``range(k, total, count)`` does."""
    return [len(range(k, total, count)) for k in range(count)]


@dataclass
class Job:
    """What every worker inherits at the fork."""

    served: ServedModel
    shape: LoadShape
    requests: int | None
    duration_s: float | None
    warmup: int
    max_tokens: int
    limits: TimeLimits
    stop: StopRule | None
    workers: int
    event_loop: str
    prompts: list[list[Prompt]]  # each worker's, in the order it sends them
    arrivals: list[tuple[int, ...]]  # open loop: each worker's arrivals of the one schedule
    batch: int  # prompts a worker asks for at a time, once its own are sent
    base_ns: int  # open loop: when arrival 0 is due
    started: Any  # multiprocessing Barrier: every worker's warm-up done (closed loop)
    ended: Any  # multiprocessing Barrier: every worker's measured requests done
    reason: Any  # multiprocessing Array of chars: the first stop rule's reason, empty until then
    counts: Any  # multiprocessing Array: per worker, answers, tokens, failed
    parent_pid: int = 0  # the test process: a worker does not outlive it


def work(job: Job, k: int, pipe: Connection) -> None:
    """A worker's whole life: offer its share, send the result (or the error) back."""
    # Ctrl+C reaches the whole process group: the test process stops the workers (SIGTERM),
    # and a worker must not run the test process's own handlers (they stop its servers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with(job.parent_pid)
    try:
        pipe.send(("result", run_client(_offer_share(job, k, pipe), job.event_loop)))
    except BaseException:  # every failure goes back to the test process
        job.started.abort()
        job.ended.abort()
        with contextlib.suppress(OSError):
            pipe.send(("error", traceback.format_exc()))


def _die_with(parent: int) -> None:
    """SIGKILL this worker when the test process dies (Linux): waiting at a barrier for a dead
    test process, it would otherwise never end."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:  # it died before that took hold
        os._exit(1)


async def _offer_share(job: Job, k: int, pipe: Connection
                       ) -> tuple[LoadRun, dict[str, float]]:
    watch = HealthWatch(None, in_process=False)  # only its own lag and CPU are used
    lag = asyncio.create_task(watch.lag_probe())
    prompts = _Handed(job.prompts[k], pipe, job.batch)
    stop = _shared_stop(job) if job.stop else None
    try:
        async with job.served.client(job.max_tokens, job.limits.request_s,
                                     job.limits.first_token_s) as client:
            tally = _Tallied(client, job.counts, k)
            if job.shape.is_open:
                shape = job.shape
                if shape.max_concurrency:
                    shape = dataclasses.replace(
                        shape, max_concurrency=split(shape.max_concurrency, job.workers)[k])
                run = await run_open_loop(
                    tally, prompts, shape=shape, requests=job.requests,
                    duration_s=job.duration_s, warmup=job.warmup,
                    observers=[_Meeting(None, job.ended), watch], stop=stop,
                    cut_after_s=job.limits.window_s,
                    share=Share(job.arrivals[k], job.base_ns))
            else:
                run = await run_closed_loop(
                    tally, prompts, users=split(job.shape.users or 1, job.workers)[k],
                    requests=None if job.requests is None
                    else split(job.requests, job.workers)[k],
                    duration_s=job.duration_s, warmup=split(job.warmup, job.workers)[k],
                    ramp_s=job.shape.ramp_s, observers=[_Meeting(job.started, job.ended),
                                                        watch],
                    stop=stop, cut_after_s=job.limits.window_s)
                run = dataclasses.replace(run, records=tuple(
                    dataclasses.replace(r, request_id=r.request_id * job.workers + k)
                    for r in run.records))
    finally:
        lag.cancel()
    return run, {name: watch.figures[name] for name in WORKER_FIGURES if name in watch.figures}


def _shared_stop(job: Job) -> StopRule:
    """The job's stop rule on this worker's answers; once any worker's says stop, all do."""
    assert job.stop is not None
    rule = job.stop

    def stop(records: Sequence[RequestRecord]) -> str | None:
        if job.reason.value:
            return str(job.reason.value.decode(errors="replace"))
        reason = rule(records)
        if reason:
            with job.reason.get_lock():
                if not job.reason.value:
                    job.reason.value = reason.encode()[:REASON_BYTES - 1]
        return reason

    return stop


class _Meeting:
    """A worker's window observer: waits for the others at the window's start and end."""

    def __init__(self, started: Any, ended: Any) -> None:
        self.started, self.ended = started, ended

    def window_started(self) -> None:
        if self.started is not None:
            self.started.wait()

    def window_ended(self) -> None:
        self.ended.wait()


class _Handed:
    """A worker's prompt source: the prompts it was dealt, then more from the test process."""

    about_caching = False

    def __init__(self, dealt: list[Prompt], pipe: Connection, batch: int) -> None:
        self._ready = collections.deque(dealt)
        self._pipe, self._batch = pipe, batch

    def prepare(self, count: int) -> None:
        pass

    def next_prompt(self) -> Prompt:
        if not self._ready:
            self._pipe.send(("prompts", self._batch))
            self._ready.extend(self._pipe.recv())
        return self._ready.popleft()

    def describe(self) -> PromptOrigin:
        # Never asked: the test process describes the prompts it dealt.
        return PromptOrigin("dealt by the test process", 0, "")


class _Tallied:
    """A worker's client, counting its answers into the shared tally."""

    def __init__(self, client: RequestSender, counts: Any, k: int) -> None:
        self.client, self.counts, self.at = client, counts, 3 * k

    async def send(self, request_id: int, prompt: Prompt) -> RequestRecord:
        record = await self.client.send(request_id, prompt)
        self.counts[self.at] += 1
        self.counts[self.at + 1] += record.output_tokens
        self.counts[self.at + 2] += record.error is not None
        return record

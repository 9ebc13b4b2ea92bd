"""One load offered from several client processes (``--llmperf-client-processes``), for
servers that take more streams than one event loop can read in time.

The workers are forked from the test process.  Every record is stamped with
``perf_counter_ns``, on Linux the machine's monotonic clock, the same in every process, so
their records merge onto one time line:

- **closed loop**: worker k of N runs users k, k+N, ... and the requests k, k+N, ... (its
  request ``j`` is the run's ``j * N + k``: the merged ids are those one process gives); the
  measured window starts when every worker has finished its part of the warm-up, as in one.
- **open loop**: one schedule, due from one absolute time, its arrivals dealt round-robin
  (worker k sends k, k+N, ...) except that every turn of a conversation (``Prompt.session``:
  a replayed trace's sessions) goes to the worker that sent its first turn, where it waits
  for the answer to the turn before it; a ``max_concurrency`` is split between the workers.
- **prompts** are drawn here, in the order one process draws them, and handed to the workers
  (more on request, for a window sized by its duration): no prompt is sent twice, and the
  session's source goes on after them.
- **a stop rule** is asked by each worker about its own answers; the first reason stops all.
- **health**: each worker watches its own event loop and CPU; the run's lag and client CPU
  are the busiest worker's, and the machine's other CPU leaves every worker out.
- **ending**: Ctrl+C stops the window at once (the barriers are given up, not waited at);
  the workers are SIGTERMed when the window ends, however it ends, and SIGKILLed by the
  kernel if the test process dies (process_worker).

The test process's own observers (telemetry, the server's metrics, machine health) are told
when the window starts and ends, as with one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from pytest_llmperf.load.closed_loop import StopRule, WindowObserver
from pytest_llmperf.load.open_loop import peak_in_flight, schedule
from pytest_llmperf.load.process_worker import REASON_BYTES, WORKER_FIGURES, Job, split, work
from pytest_llmperf.load.progress import Tally
from pytest_llmperf.observe.health import HealthWatch
from pytest_llmperf.prompts.builtin import Prompt, PromptSource
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import LoadRun
from pytest_llmperf.settings.groups import TimeLimits

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel

__all__ = ["WORKER_FIGURES", "busiest", "deal_arrivals", "offer_from_processes", "worker_count"]

_START_S = 0.5  # an open loop's first arrival is due this long after the workers are forked


def worker_count(wanted: int, shape: LoadShape, requests: int | None, duration_s: float | None,
                 warmup: int) -> int:
    """How many workers a load can use: no more than it has users (closed loop), requests,
    arrivals or allowed requests in flight (open loop)."""
    limits = [wanted, requests or wanted]
    if shape.is_open:
        limits += [len(schedule(shape, warmup, requests, duration_s)[0]),
                   shape.max_concurrency or wanted]
    else:
        limits.append(shape.users or 1)
    return max(1, min(limits))


def busiest(figures: Mapping[str, float], workers: Sequence[Mapping[str, float]]
            ) -> dict[str, float]:
    """The machine's ``figures`` (read in the test process) with the client's taken from
    the busiest worker, and how many there were."""
    merged = {**figures, "client_processes": len(workers)}
    for name in WORKER_FIGURES:
        values = [worker[name] for worker in workers if name in worker]
        if values:
            merged[name] = max(values)
    return merged


def offer_from_processes(
    workers: int,
    served: ServedModel,
    prompts: PromptSource,
    *,
    shape: LoadShape,
    requests: int | None,
    duration_s: float | None,
    warmup: int,
    max_tokens: int,
    limits: TimeLimits,
    watch: HealthWatch,
    observers: Sequence[WindowObserver],
    stop: StopRule | None,
    progress: Callable[[Tally], Coroutine[Any, Any, None]] | None = None,
    event_loop: str = "asyncio",
) -> tuple[LoadRun, list[dict[str, float]]]:
    """The window offered from ``workers`` processes, each on an ``event_loop``
    (load.event_loop): the merged run, and each worker's health figures
    (:data:`WORKER_FIGURES`).  ``watch`` (this process's machine health) is
    told the workers' pids, so their CPU counts as the client's."""
    if served.endpoint is None and served.open_client is None:
        raise ValueError(f"{served.description} has no client to fork")
    context = multiprocessing.get_context("fork")
    dealt, arrivals = _deal_prompts(prompts, shape, workers, requests, duration_s, warmup)
    job = Job(
        served=served, shape=shape, requests=requests, duration_s=duration_s, warmup=warmup,
        max_tokens=max_tokens, limits=limits, stop=stop, workers=workers, event_loop=event_loop,
        prompts=dealt, arrivals=arrivals,
        batch=max(16, 2 * (shape.users or 1) // workers),
        base_ns=0, started=context.Barrier(workers + 1), ended=context.Barrier(workers + 1),
        reason=context.Array("c", REASON_BYTES),
        counts=context.Array("q", 3 * workers, lock=False), parent_pid=os.getpid())
    job.base_ns = time.perf_counter_ns() + round(_START_S * 1e9)
    pipes = [context.Pipe() for _ in range(workers)]
    processes = [context.Process(target=work, args=(job, k, pipes[k][1]), daemon=True,
                                 name=f"llmperf-client-{k}") for k in range(workers)]
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock the child on a
        # lock another thread held; a worker takes none of those (no logging, no telemetry).
        warnings.simplefilter("ignore", DeprecationWarning)
        for process in processes:
            process.start()
    for _, theirs in pipes:  # the workers hold these; a worker's death then reads as EOF
        theirs.close()
    watch.client_pids = [p.pid for p in processes if p.pid is not None]
    try:
        return asyncio.run(_lead(job, processes, [ours for ours, _ in pipes], prompts,
                                 [watch, *observers], progress))
    finally:
        job.started.abort()  # a worker still at a barrier gives up there
        job.ended.abort()
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        for ours, _ in pipes:
            ours.close()


def _deal_prompts(prompts: PromptSource, shape: LoadShape, workers: int, requests: int | None,
                  duration_s: float | None, warmup: int
                  ) -> tuple[list[list[Prompt]], list[tuple[int, ...]]]:
    """Each worker's prompts, drawn here in the order one process would send them, and (open
    loop) the arrivals each sends, arrival i with prompt i (:func:`deal_arrivals`)."""
    if shape.is_open:
        offsets, _ = schedule(shape, warmup, requests, duration_s)
        drawn = [prompts.next_prompt() for _ in offsets]
        arrivals = deal_arrivals([prompt.session for prompt in drawn], workers)
        return [[drawn[i] for i in ours] for ours in arrivals], arrivals
    warm = [prompts.next_prompt() for _ in range(warmup)]
    if requests is not None:
        measured = [prompts.next_prompt() for _ in range(requests)]
        return [warm[k::workers] + measured[k::workers] for k in range(workers)], []
    users = split(shape.users or 1, workers)  # by duration: two rounds each, more on request
    return [warm[k::workers] + [prompts.next_prompt() for _ in range(2 * users[k])]
            for k in range(workers)], []


def deal_arrivals(sessions: Sequence[str | None], workers: int) -> list[tuple[int, ...]]:
    """Which arrivals each of ``workers`` sends, given each arrival's conversation (None: it
    is one request on its own): a conversation's later turns go to the worker that sent its
    first, since only there can a turn wait for the answer before it; every other arrival
    goes to the worker with the fewest so far (round-robin when there are no
    conversations)."""
    dealt: list[list[int]] = [[] for _ in range(workers)]
    owner: dict[str, int] = {}
    for index, session in enumerate(sessions):
        k = owner.get(session) if session is not None else None
        if k is None:
            k = min(range(workers), key=lambda w: len(dealt[w]))
            if session is not None:
                owner[session] = k
        dealt[k].append(index)
    return [tuple(ours) for ours in dealt]


async def _lead(job: Job, processes: Sequence[multiprocessing.process.BaseProcess],
                pipes: Sequence[Connection], prompts: PromptSource,
                observers: Sequence[WindowObserver],
                progress: Callable[[Tally], Coroutine[Any, Any, None]] | None
                ) -> tuple[LoadRun, list[dict[str, float]]]:
    """This process's part: hand out prompts, tell the observers, gather the results."""
    loop = asyncio.get_running_loop()
    answers: list[asyncio.Future[tuple[LoadRun, dict[str, float]]]] = [
        loop.create_future() for _ in pipes]
    def hear(k: int) -> None:
        try:
            kind, body = pipes[k].recv()
        except (EOFError, OSError):
            loop.remove_reader(pipes[k].fileno())
            processes[k].join(2)  # it is ending: its exit code says how
            if not answers[k].done():
                answers[k].set_exception(RuntimeError(
                    f"client process {k} ended without a result (exit code "
                    f"{processes[k].exitcode})"))
            return
        if kind == "prompts":
            pipes[k].send([prompts.next_prompt() for _ in range(body)])
        elif kind == "result" and not answers[k].done():
            answers[k].set_result(body)
        elif kind == "error" and not answers[k].done():
            answers[k].set_exception(RuntimeError(f"client process {k} failed:\n{body}"))

    async def watch_for_deaths() -> None:
        # Another worker, forked after it, holds a dead worker's pipe open: no EOF comes.
        while True:
            await asyncio.sleep(0.2)
            for k, process in enumerate(processes):
                if process.exitcode is not None and not answers[k].done() \
                        and not pipes[k].poll():
                    answers[k].set_exception(RuntimeError(
                        f"client process {k} ended without a result (exit code "
                        f"{process.exitcode})"))
                    job.started.abort()
                    job.ended.abort()

    for k, pipe in enumerate(pipes):
        loop.add_reader(pipe.fileno(), hear, k)
    helpers = [asyncio.create_task(watch_for_deaths())]
    if progress:
        helpers.append(asyncio.create_task(progress(_SharedTally(job.counts, job.workers))))
    try:
        await _follow_window(job, observers, answers)
        results = await asyncio.gather(*answers)
    finally:
        for helper in helpers:
            helper.cancel()
        for pipe in pipes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(pipe.fileno())
    return _merge(job, [run for run, _ in results]), [figures for _, figures in results]


async def _follow_window(job: Job, observers: Sequence[WindowObserver],
                         answers: Sequence[asyncio.Future[Any]]) -> None:
    """Tell ``observers`` when the workers' window starts and ends.  A worker that fails
    first breaks the barriers, and its error is the one raised."""
    async def meet(barrier: Any) -> None:
        waiting = asyncio.ensure_future(asyncio.to_thread(_meet, barrier))
        failed = asyncio.ensure_future(asyncio.wait(answers,
                                                    return_when=asyncio.FIRST_EXCEPTION))
        try:
            await asyncio.wait([waiting, failed], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # Cancelled (Ctrl+C): the thread waiting at the barrier must not keep the loop's
            # end, and so the interrupt, waiting for the window's end.
            barrier.abort()
            raise
        finally:
            failed.cancel()
        for answer in answers:
            if answer.done() and answer.exception():
                barrier.abort()
                raise answer.exception()  # type: ignore[misc]
        await waiting

    if job.shape.is_open:  # the window starts when the first measured arrival is due
        offsets, _ = schedule(job.shape, job.warmup, job.requests, job.duration_s)
        first = offsets[job.warmup] if job.warmup < len(offsets) else 0.0
        await asyncio.sleep(max(0.0, (job.base_ns + first * 1e9 - time.perf_counter_ns())
                                / 1e9))
    else:
        await meet(job.started)
    for observer in observers:
        observer.window_started()
    try:
        await meet(job.ended)
    finally:
        for observer in reversed(observers):
            observer.window_ended()


def _meet(barrier: Any) -> None:
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed: it says why
        barrier.wait()


def _merge(job: Job, runs: Sequence[LoadRun]) -> LoadRun:
    records = sorted(itertools.chain.from_iterable(run.records for run in runs),
                     key=lambda r: r.request_id)
    start = min(run.window_start_ns for run in runs)
    stopped = job.reason.value.decode(errors="replace") or next(
        (run.stopped_early for run in runs if run.stopped_early), None)
    return LoadRun(
        records=tuple(records), window_start_ns=start,
        window_end_ns=max(start, *(run.window_end_ns for run in runs)),
        concurrency=peak_in_flight(records) if job.shape.is_open else (job.shape.users or 1),
        warmup_requests=job.warmup, stopped_early=stopped or None)


class _SharedTally:
    """The workers' answers so far, summed for the progress line."""

    def __init__(self, counts: Any, workers: int) -> None:
        self.counts, self.workers = counts, workers

    def _sum(self, offset: int) -> int:
        return sum(self.counts[3 * k + offset] for k in range(self.workers))

    @property
    def done(self) -> int:
        return self._sum(0)

    @property
    def tokens(self) -> int:
        return self._sum(1)

    @property
    def errors(self) -> int:
        return self._sum(2)

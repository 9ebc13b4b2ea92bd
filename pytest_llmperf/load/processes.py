"""One load offered from several client processes (``--llmperf-client-processes``), for
servers that take more streams than one event loop can read in time.

The workers are forked from the test process.  Every record is stamped with
``perf_counter_ns``, on Linux the machine's monotonic clock, the same in every process, so
their records merge onto one time line:

- **closed loop**: worker k of N runs users k, k+N, ... and the requests k, k+N, ... (its
  request ``j`` is the run's ``j * N + k``: the merged ids are those one process gives); the
  measured window starts when every worker has finished its part of the warm-up, as in one.
- **open loop**: one schedule, due from one absolute time; worker k sends its arrivals k, k+N,
  ...; a ``max_concurrency`` is split between the workers.
- **prompts** are drawn here, in the order one process draws them, and handed to the workers
  (more on request, for a window sized by its duration): no prompt is sent twice, and the
  session's source goes on after them.
- **a stop rule** is asked by each worker about its own answers; the first reason stops all.
- **health**: each worker watches its own event loop and CPU; the run's lag and client CPU
  are the busiest worker's, and the machine's other CPU leaves every worker out.

The test process's own observers (telemetry, the server's metrics, machine health) are told
when the window starts and ends, as with one process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import multiprocessing
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from pytest_llmperf.clients.base import RequestSender
from pytest_llmperf.load.closed_loop import StopRule, WindowObserver, run_closed_loop
from pytest_llmperf.load.event_loop import run_client
from pytest_llmperf.load.open_loop import Share, peak_in_flight, run_open_loop, schedule
from pytest_llmperf.load.progress import Tally
from pytest_llmperf.load.prompts import Prompt, PromptSource
from pytest_llmperf.load.shapes import LoadShape
from pytest_llmperf.observe.health import HealthWatch
from pytest_llmperf.results.records import LoadRun, RequestRecord

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.load.runner import TimeLimits

__all__ = ["WORKER_FIGURES", "busiest", "offer_from_processes", "worker_count"]

# The health figures each worker reads about itself; the run's are the worst worker's.
WORKER_FIGURES = ("loop_lag_ms_p99", "loop_lag_ms_max", "client_cpu_pct")
_START_S = 0.5  # an open loop's first arrival is due this long after the workers are forked
_REASON_BYTES = 4096


def split(total: int, count: int) -> list[int]:
    """``total`` shared between ``count`` workers the way ``range(k, total, count)`` does."""
    return [len(range(k, total, count)) for k in range(count)]


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


@dataclass
class _Job:
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
    batch: int  # prompts a worker asks for at a time, once its own are sent
    base_ns: int  # open loop: when arrival 0 is due
    started: Any  # multiprocessing Barrier: every worker's warm-up done (closed loop)
    ended: Any  # multiprocessing Barrier: every worker's measured requests done
    reason: Any  # multiprocessing Array of chars: the first stop rule's reason, empty until then
    counts: Any  # multiprocessing Array: per worker, answers, tokens, failed


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
    job = _Job(
        served=served, shape=shape, requests=requests, duration_s=duration_s, warmup=warmup,
        max_tokens=max_tokens, limits=limits, stop=stop, workers=workers, event_loop=event_loop,
        prompts=_deal_prompts(prompts, shape, workers, requests, duration_s, warmup),
        batch=max(16, 2 * (shape.users or 1) // workers),
        base_ns=0, started=context.Barrier(workers + 1), ended=context.Barrier(workers + 1),
        reason=context.Array("c", _REASON_BYTES),
        counts=context.Array("q", 3 * workers, lock=False))
    job.base_ns = time.perf_counter_ns() + round(_START_S * 1e9)
    pipes = [context.Pipe() for _ in range(workers)]
    processes = [context.Process(target=_work, args=(job, k, pipes[k][1]), daemon=True,
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
                  duration_s: float | None, warmup: int) -> list[list[Prompt]]:
    """Each worker's prompts, drawn here in the order one process would send them."""
    if shape.is_open:  # arrival i gets prompt i; worker k sends arrivals k, k+N, ...
        offsets, _ = schedule(shape, warmup, requests, duration_s)
        drawn = [prompts.next_prompt() for _ in offsets]
        return [drawn[k::workers] for k in range(workers)]
    warm = [prompts.next_prompt() for _ in range(warmup)]
    if requests is not None:
        measured = [prompts.next_prompt() for _ in range(requests)]
        return [warm[k::workers] + measured[k::workers] for k in range(workers)]
    users = split(shape.users or 1, workers)  # by duration: two rounds each, more on request
    return [warm[k::workers] + [prompts.next_prompt() for _ in range(2 * users[k])]
            for k in range(workers)]


async def _lead(job: _Job, processes: Sequence[multiprocessing.process.BaseProcess],
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


async def _follow_window(job: _Job, observers: Sequence[WindowObserver],
                         answers: Sequence[asyncio.Future[Any]]) -> None:
    """Tell ``observers`` when the workers' window starts and ends.  A worker that fails
    first breaks the barriers, and its error is the one raised."""
    async def meet(barrier: Any) -> None:
        waiting = asyncio.ensure_future(asyncio.to_thread(_meet, barrier))
        failed = asyncio.ensure_future(asyncio.wait(answers,
                                                    return_when=asyncio.FIRST_EXCEPTION))
        await asyncio.wait([waiting, failed], return_when=asyncio.FIRST_COMPLETED)
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


def _merge(job: _Job, runs: Sequence[LoadRun]) -> LoadRun:
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


# ---- in a worker ----------------------------------------------------------------------------


def _work(job: _Job, k: int, pipe: Connection) -> None:
    """A worker's whole life: offer its share, send the result (or the error) back."""
    # Ctrl+C reaches the whole process group: the test process stops the workers (SIGTERM),
    # and a worker must not run the test process's own handlers (they stop its servers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        pipe.send(("result", run_client(_offer_share(job, k, pipe), job.event_loop)))
    except BaseException:  # every failure goes back to the test process
        job.started.abort()
        job.ended.abort()
        with contextlib.suppress(OSError):
            pipe.send(("error", traceback.format_exc()))


async def _offer_share(job: _Job, k: int, pipe: Connection
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
                    share=Share(k, job.workers, job.base_ns))
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


def _shared_stop(job: _Job) -> StopRule:
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
                    job.reason.value = reason.encode()[:_REASON_BYTES - 1]
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

    def describe(self) -> dict[str, object]:
        return {}


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

"""Run one load shape against a served model and keep everything the report needs."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmperf.clients.base import RequestSender
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.closed_loop import StopRule, WindowObserver, run_closed_loop
from pytest_llmperf.load.event_loop import raise_open_files_limit, run_client
from pytest_llmperf.load.open_loop import run_open_loop
from pytest_llmperf.load.progress import PROGRESS_EVERY_S, Counting, Tally, tell_progress
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.observe.health import (
    HealthWatch,
    judge_health,
    local_server_pid,
    send_lateness,
)
from pytest_llmperf.observe.server_metrics import ServerMetricsProbe
from pytest_llmperf.prompts.builtin import PromptSource
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.records import LoadRun
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.settings.groups import DEFAULT_LIMITS, TimeLimits

if TYPE_CHECKING:
    from pytest_llmperf.load.staged import PhasedObservers
    from pytest_llmperf.observe.telemetry import Telemetry

__all__ = ["TimeLimits", "finish_records", "run_load"]


def planned_prompts(shape: LoadShape, requests: int | None, duration_s: float | None,
                    warmup: int) -> int:
    """About how many prompts a window sends: exact when sized by requests; for a duration,
    the schedule's arrivals, or a closed loop's users at a request a second each."""
    if requests is not None:
        return warmup + requests
    seconds = duration_s or 0.0
    if shape.is_open and shape.rate is not None and math.isfinite(shape.rate):
        return warmup + math.ceil(shape.rate * seconds * 1.1)
    return warmup + (shape.users or 1) * max(4, math.ceil(seconds))


def finish_records(run: LoadRun, served: ServedModel, max_tokens: int) -> LoadRun:
    """After the window: counts the server did not send (the model's tokenizer), then the one
    rule for what is a complete answer (:func:`pytest_llmperf.results.outcome.judge`)."""
    records = count_missing_tokens(run.records, served.token_counter)
    if not served.forces_length:
        return dataclasses.replace(run, records=tuple(judge(r, None) for r in records))
    # Each request forced the length it asked for (a dataset may give each its own), but a
    # structured answer, which ends with its object.
    return dataclasses.replace(run, records=tuple(
        judge(r, None if r.schema_checked else r.max_tokens if r.max_tokens is not None
              else max_tokens) for r in records))


def run_load(
    served: ServedModel,
    prompts: PromptSource,
    *,
    shape: LoadShape | None = None,
    users: int | None = None,
    requests: int | None = None,
    duration_s: float | None = None,
    warmup: int = 0,
    max_tokens: int = 64,
    limits: TimeLimits = DEFAULT_LIMITS,
    observers: Sequence[WindowObserver] = (),
    telemetry: Telemetry | None = None,
    stop: StopRule | None = None,
    progress: Callable[[str], None] | None = None,
    progress_label: str = "",
    client_processes: int = 1,
    event_loop: str = "asyncio",
) -> WindowResult:
    """One measured window of ``shape`` (load.closed_loop or load.open_loop); ``users=N``
    is short for ``shape=LoadShape.closed(N)``.

    ``observers`` are told when the measured window starts and ends (telemetry samplers).
    When the engine has a Prometheus endpoint its metrics are scraped around the window too.
    ``progress`` is told every 15 s how far the window (its warm-up included) has got.
    ``client_processes`` above 1 offers the load from that many processes (load.processes),
    as many as it can use; ``event_loop`` is the client's (load.event_loop).
    """
    if (shape is None) == (users is None):
        raise ValueError("give a load shape or a number of users, not both")
    shape = shape or LoadShape.closed(users or 1)
    probe = None
    if served.metrics_urls:  # the engine's /metrics, and every --llmperf-metrics-url
        probe = ServerMetricsProbe(served.metrics_urls, served.metric_names)
    # The probe goes last: its first scrape is then the closest to the window's start (and,
    # observers ending in reverse order, its last scrape the closest to the window's end).
    server_pid = served.server_pid
    if server_pid is None and served.endpoint is not None:  # attached: maybe on this machine
        server_pid = local_server_pid(served.endpoint.base_url)
    watch = HealthWatch(server_pid, in_process=served.endpoint is None)
    watch.replica_pids = [pid for pid in (local_server_pid(e.base_url)
                                          for e in served.replicas[1:]) if pid is not None]
    watching: list[WindowObserver] = [watch, *observers, *([telemetry] if telemetry else []),
                                      *([probe] if probe else [])]
    phased = None
    if shape.stages:  # observed stage by stage (the health of workers' own loops: the run's)
        phased = _phased(watching if client_processes <= 1 else watching[1:], shape, watch,
                         telemetry, probe)
        watching = [watch, phased] if client_processes > 1 else [phased]

    async def offer(client: RequestSender) -> LoadRun:
        if shape.is_open:
            return await run_open_loop(client, prompts, shape=shape, requests=requests,
                                       duration_s=duration_s, warmup=warmup,
                                       observers=watching, stop=stop,
                                       cut_after_s=limits.window_s)
        return await run_closed_loop(client, prompts, users=shape.users or 1,
                                     requests=requests, duration_s=duration_s, warmup=warmup,
                                     ramp_s=shape.ramp_s, observers=watching, stop=stop,
                                     cut_after_s=limits.window_s)

    def tell(tally: Tally) -> Coroutine[Any, Any, None]:
        assert progress is not None
        # A window with a stop rule (sized by its SLOs, a capacity probe) may end sooner.
        up_to = "up to " if stop is not None else ""
        planned = (f" of {up_to}{requests + warmup}" if requests is not None else "")
        planned += " requests answered" + (f" ({warmup} warm-up)" if warmup else "")
        return tell_progress(tally, progress, progress_label or shape.label, planned,
                             PROGRESS_EVERY_S)

    async def measure() -> LoadRun:
        lag = asyncio.create_task(watch.lag_probe())  # the event loop's own lateness
        try:
            async with served.client(max_tokens, limits.request_s,
                                     limits.first_token_s) as client:
                if progress is None:
                    return await offer(client)
                counting = Counting(client)
                ticker = asyncio.create_task(tell(counting))
                try:
                    return await offer(counting)
                finally:
                    ticker.cancel()
        finally:
            lag.cancel()

    open_files = raise_open_files_limit()  # a socket per user: not the soft limit's 1024
    # Sources that ask the server's tokenizer make their prompts now, outside the window.
    prompts.prepare(planned_prompts(shape, requests, duration_s, warmup))
    workers = 1
    if client_processes > 1:
        if served.endpoint is None:
            raise ValueError(f"{served.description} runs in the test process: its load cannot "
                             "come from client processes (--llmperf-client-processes)")
        from pytest_llmperf.load.processes import worker_count

        workers = worker_count(client_processes, shape, requests, duration_s, warmup)
    worker_figures: list[dict[str, float]] = []
    if workers > 1:
        from pytest_llmperf.load.processes import offer_from_processes

        offered, worker_figures = offer_from_processes(
            workers, served, prompts, shape=shape, requests=requests, duration_s=duration_s,
            warmup=warmup, max_tokens=max_tokens, limits=limits, watch=watch,
            observers=watching[1:], stop=stop, progress=tell if progress else None,
            event_loop=event_loop)
    else:
        offered = run_client(measure(), event_loop)
    run = finish_records(offered, served, max_tokens)
    resources = None
    if telemetry is not None:
        resources = telemetry.result(output_tokens=sum(r.output_tokens for r in run.records
                                                       if r.ok))
    whole = WindowResult(
        served=served.info, shape=shape, max_tokens=max_tokens, run=run,
        server_metrics=probe.result() if probe and not phased else None,
        server_notes=tuple(probe.notes) if probe and not phased else (),
        server_families=probe.families() if probe and not phased else (),
        resources=None if phased else resources,
        prompts=prompts.describe(),
        health=judge_health(_client_health(watch.figures, worker_figures, open_files),
                            *send_lateness(run.records), records=run.records),
    )
    if phased is None:
        return whole
    from pytest_llmperf.load.staged import stage_windows

    return dataclasses.replace(whole, stages=stage_windows(whole, phased.phases))


def _phased(observers: list[WindowObserver], shape: LoadShape, watch: HealthWatch,
            telemetry: Telemetry | None, probe: ServerMetricsProbe | None) -> PhasedObservers:
    """``observers`` told of each stage of ``shape`` as a window of its own."""
    from pytest_llmperf.load.staged import PhasedObservers, StageObservations
    from pytest_llmperf.results.rate_stages import stage_starts

    def capture() -> StageObservations:
        return StageObservations(
            resources=telemetry.result() if telemetry is not None else None,
            server_metrics=probe.result() if probe is not None else None,
            server_notes=tuple(probe.notes) if probe is not None else (),
            server_families=probe.families() if probe is not None else (),
            health_figures=dict(watch.figures) if watch in observers else None)

    return PhasedObservers(observers, stage_starts(shape.stages)[1:], capture)


def _client_health(figures: dict[str, float], workers: list[dict[str, float]],
                   open_files: int | None) -> dict[str, float]:
    """The window's health figures: the client's from its busiest process, and the most
    sockets (open files) each client process may hold."""
    if workers:
        from pytest_llmperf.load.processes import busiest

        figures = busiest(figures, workers)
    if figures and open_files is not None:
        figures = {**figures, "open_files_limit": float(open_files)}
    return figures

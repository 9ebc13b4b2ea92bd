"""Run one load shape against a served model and keep everything the report needs."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_llmperf.clients.base import RequestSender
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.closed_loop import StopRule, WindowObserver, run_closed_loop
from pytest_llmperf.load.event_loop import run_client
from pytest_llmperf.load.limits import DEFAULT_LIMITS, TimeLimits
from pytest_llmperf.load.open_loop import run_open_loop
from pytest_llmperf.load.progress import PROGRESS_EVERY_S, Counting, Tally, tell_progress
from pytest_llmperf.load.shapes import LoadShape
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.observe.health import (
    HealthWatch,
    judge_health,
    local_server_pid,
    send_lateness,
)
from pytest_llmperf.observe.server_metrics import ServerMetricsProbe
from pytest_llmperf.prompts.builtin import PromptSource
from pytest_llmperf.results.metrics import RunMetrics, summarize
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.pacing import overload
from pytest_llmperf.results.records import LoadRun

if TYPE_CHECKING:
    from pytest_llmperf.observe.telemetry import Telemetry

__all__ = ["PerfResult", "TimeLimits", "finish_records", "run_load"]


@dataclass(frozen=True)
class PerfResult:
    """One measured window: the load that was offered, the records and their metrics."""

    served: ServedModel
    run: LoadRun
    metrics: RunMetrics
    shape: LoadShape
    max_tokens: int
    # The engine's own numbers over the same window (promscrape); None: it offers none.
    server_metrics: Mapping[str, float] | None = None
    server_notes: tuple[str, ...] = ()  # why some server numbers are missing
    # GPU and server CPU/RAM over the same window (telemetry.Telemetry.result); None: not run.
    telemetry: Mapping[str, Any] | None = None
    # Where the prompts came from and how to get the same texts again (seed, salt).
    prompts: Mapping[str, object] | None = None
    # The further measured windows of the same load (--llmperf-repeats), run right after this.
    repeats: tuple[PerfResult, ...] = ()
    # Whether the numbers can be trusted (observe.health.judge_health): the client's and the
    # machine's figures over the window, and the marks they earned.  None: not watched.
    health: Mapping[str, Any] | None = None

    @property
    def validity_marks(self) -> dict[str, list[str]]:
        """``{"client-bound": [...limits crossed], "disturbed": [...]}``, marks earned only."""
        health = self.health or {}
        return {mark: list(health[key]) for mark, key in (("client-bound", "client_bound"),
                                                          ("disturbed", "disturbed"))
                if health.get(key)}

    @property
    def users(self) -> int:
        """The closed loop's users; for an open loop the most requests it had in flight."""
        return self.shape.users or self.run.concurrency

    @property
    def overload(self) -> str | None:
        """Why an open-loop window's latencies are queueing (results.pacing); None if not."""
        return overload(self.run, self.metrics.scalars)

    @property
    def windows(self) -> tuple[PerfResult, ...]:
        """This window and its repeats, in the order they ran."""
        return (dataclasses.replace(self, repeats=()), *self.repeats)

    @property
    def context(self) -> str:
        """``64 requests, smollm2-135m on llamacpp (xllamacpp 2026.10.11549)``."""
        return (f"{len(self.run.records)} requests at {self.shape.label}, "
                f"{self.served.description}")


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
    # Each request forced the length it asked for (a dataset may give each its own).
    return dataclasses.replace(run, records=tuple(
        judge(r, r.max_tokens if r.max_tokens is not None else max_tokens) for r in records))


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
) -> PerfResult:
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
    if served.metrics_url and served.metric_names:
        probe = ServerMetricsProbe(served.metrics_url, served.metric_names)
    # The probe goes last: its first scrape is then the closest to the window's start (and,
    # observers ending in reverse order, its last scrape the closest to the window's end).
    server_pid = served.server_pid
    if server_pid is None and served.endpoint is not None:  # attached: maybe on this machine
        server_pid = local_server_pid(served.endpoint.base_url)
    watch = HealthWatch(server_pid, in_process=served.endpoint is None)
    watching = [watch, *observers, *([telemetry] if telemetry else []),
                *([probe] if probe else [])]

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
        planned = (f" of {requests + warmup}" if requests is not None else "")
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
    metrics = summarize(run)
    figures = None
    if telemetry is not None:
        figures = telemetry.result(output_tokens=sum(r.output_tokens for r in run.records
                                                     if r.ok))
        metrics = metrics.with_resources(figures["metrics"])
    return PerfResult(
        served=served, run=run, metrics=metrics, shape=shape, max_tokens=max_tokens,
        server_metrics=probe.result() if probe else None,
        server_notes=tuple(probe.notes) if probe else (),
        telemetry=figures,
        prompts={**prompts.describe(), "about_caching": prompts.about_caching},
        health=judge_health(_client_health(watch.figures, worker_figures),
                            *send_lateness(run.records)),
    )


def _client_health(figures: dict[str, float], workers: list[dict[str, float]]
                   ) -> dict[str, float]:
    if not workers:
        return figures
    from pytest_llmperf.load.processes import busiest

    return busiest(figures, workers)

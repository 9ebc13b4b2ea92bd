"""Run one load shape against a served model and keep everything the report needs."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.closed_loop import StopRule, WindowObserver, run_closed_loop
from pytest_llmperf.load.open_loop import run_open_loop
from pytest_llmperf.load.prompts import PromptSource
from pytest_llmperf.load.shapes import LoadShape
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.observe.server_metrics import ServerMetricsProbe
from pytest_llmperf.results.metrics import RunMetrics, summarize
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.pacing import overload
from pytest_llmperf.results.records import LoadRun

if TYPE_CHECKING:
    from pytest_llmperf.observe.telemetry import Telemetry

__all__ = ["PerfResult", "finish_records", "run_load"]


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


def finish_records(run: LoadRun, served: ServedModel, max_tokens: int) -> LoadRun:
    """After the window: counts the server did not send (the model's tokenizer), then the one
    rule for what is a complete answer (:func:`pytest_llmperf.results.outcome.judge`)."""
    forced = max_tokens if served.forces_length else None
    records = count_missing_tokens(run.records, served.token_counter)
    return dataclasses.replace(run, records=tuple(judge(r, forced) for r in records))


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
    timeout_s: float = 600.0,
    observers: Sequence[WindowObserver] = (),
    telemetry: Telemetry | None = None,
    stop: StopRule | None = None,
) -> PerfResult:
    """One measured window of ``shape`` (load.closed_loop or load.open_loop); ``users=N``
    is short for ``shape=LoadShape.closed(N)``.

    ``observers`` are told when the measured window starts and ends (telemetry samplers).
    When the engine has a Prometheus endpoint its metrics are scraped around the window too.
    """
    if (shape is None) == (users is None):
        raise ValueError("give a load shape or a number of users, not both")
    shape = shape or LoadShape.closed(users or 1)
    probe = None
    if served.metrics_url and served.metric_names:
        probe = ServerMetricsProbe(served.metrics_url, served.metric_names)
    # The probe goes last: its first scrape is then the closest to the window's start (and,
    # observers ending in reverse order, its last scrape the closest to the window's end).
    watching = [*observers, *([telemetry] if telemetry else []), *([probe] if probe else [])]

    async def measure() -> LoadRun:
        async with served.client(max_tokens, timeout_s) as client:
            if shape.is_open:
                return await run_open_loop(client, prompts, shape=shape, requests=requests,
                                           duration_s=duration_s, warmup=warmup,
                                           observers=watching, stop=stop)
            return await run_closed_loop(client, prompts, users=shape.users or 1,
                                         requests=requests, duration_s=duration_s,
                                         warmup=warmup, ramp_s=shape.ramp_s,
                                         observers=watching, stop=stop)

    run = finish_records(asyncio.run(measure()), served, max_tokens)
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
        prompts=prompts.describe(),
    )

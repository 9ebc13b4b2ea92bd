"""Fixtures that run many loads: ``llmperf_sweep`` and ``llmperf_capacity``.

- ``llmperf_sweep(users=[1, 2, 4])`` or ``(rates=[0.5, 1, 2])`` or ``(shapes=[...])``: each load
  its own warm-up and measured window (an ``llmperf_load`` call each), then a table and a chart;
  ``llmperf_slo.check(sweep)`` holds every point to the SLOs.
- ``llmperf_capacity("users")`` or ``("rate")``: the highest load at which every SLO of the test
  holds (searches.capacity); its probes are judged without failing the test, and
  ``llmperf_slo.check(capacity)`` holds the result to the test's capacity SLOs
  (``capacity_max_concurrency >= 8``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_llmperf.load.shapes import closed_shape, open_shape
from pytest_llmperf.plugin.fixtures import LoadFunction, _png_name, _terminal_progress
from pytest_llmperf.plugin.recorder import ResultRecorder

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.load.shapes import LoadShape
    from pytest_llmperf.observe.telemetry import Telemetry
    from pytest_llmperf.prompts.builtin import PromptSource
    from pytest_llmperf.results.sweep import SweepResult
    from pytest_llmperf.results.thresholds import Check
    from pytest_llmperf.searches.capacity import CapacityResult, ProbeOutcome
    from pytest_llmperf.settings.resolve import Settings

__all__ = ["llmperf_capacity", "llmperf_sweep"]

# Per-load SLO limits drawn on the charts, when the test has them.
_CHART_SLOS = ("ttft_ms.p95", "tpot_ms.p95", "decode_tokens_per_s.mean")


class SweepFunction(Protocol):
    def __call__(self, *, users: Sequence[int] | None = None,
                 rates: Sequence[float] | None = None,
                 shapes: Sequence[LoadShape] | None = None,
                 requests: int | Sequence[int] | None = None,
                 duration_s: float | None = None,
                 max_tokens: int | None = None) -> SweepResult: ...


class CapacityFunction(Protocol):
    def __call__(self, dimension: str = "users", *, start: float | None = None,
                 maximum: float | None = None, budget_s: float | None = None,
                 requests: int | None = None, shape: LoadShape | None = None,
                 max_tokens: int | None = None, probe_s: float = 10.0) -> CapacityResult: ...


def _slo_lines(checks: Sequence[Check]) -> dict[str, float]:
    return {c.key: c.limit for c in checks if c.key in _CHART_SLOS}


def _chart(entry: dict[str, object], settings: Settings, recorder: ResultRecorder,
           kind: str) -> None:
    from pytest_llmperf.report.load_charts import write_load_chart

    path = settings.output_dir / _png_name(recorder).replace("-timeline.png", f"-{kind}.png")
    png = write_load_chart(entry, path)
    entry["chart_png"] = str(png) if png else None


def record_sweep(result: SweepResult, first_call: int, request: pytest.FixtureRequest,
                 served: ServedModel, settings: Settings, recorder: ResultRecorder,
                 kind: str = "sweep", **extra: object) -> None:
    """A sweep's entry (its points are the load calls from ``first_call`` on), its chart
    (``kind`` names the PNG) and the recorder's note of it; ``extra`` goes into the entry."""
    from pytest_llmperf.plugin.slo_check import test_checks
    from pytest_llmperf.report.entry import sweep_entry

    entry = sweep_entry(result, None, list(range(first_call, recorder.calls + 1)),
                        _slo_lines(test_checks(request, served)))
    entry.update(extra)
    _chart(entry, settings, recorder, kind)
    recorder.add_search(result, entry)


@pytest.fixture
def llmperf_sweep(llmperf_load: LoadFunction, llmperf_settings: Settings,
                  llmperf_recorder: ResultRecorder, llmperf_server: ServedModel,
                  request: pytest.FixtureRequest) -> SweepFunction:
    from pytest_llmperf.results.sweep import SweepResult

    def sweep(*, users: Sequence[int] | None = None, rates: Sequence[float] | None = None,
              shapes: Sequence[LoadShape] | None = None,
              requests: int | Sequence[int] | None = None, duration_s: float | None = None,
              max_tokens: int | None = None) -> SweepResult:
        """``requests``: one count for every point, or one per point."""
        if sum(x is not None for x in (users, rates, shapes)) != 1:
            raise TypeError("llmperf_sweep takes one of users=, rates= or shapes=")
        chosen = (list(shapes) if shapes is not None
                  else [closed_shape(llmperf_settings, n) for n in users] if users is not None
                  else [open_shape(llmperf_settings, r) for r in rates or ()])
        if not chosen:
            raise ValueError("llmperf_sweep needs at least one load")
        counts = (list(requests) if isinstance(requests, Sequence)
                  else [requests] * len(chosen))
        if len(counts) != len(chosen):
            raise ValueError(f"llmperf_sweep got {len(counts)} request counts for "
                             f"{len(chosen)} loads")
        dimension = "rate" if chosen[0].is_open else "users"
        first_call = llmperf_recorder.calls + 1
        points = tuple(llmperf_load(shape=shape, requests=count, duration_s=duration_s,
                                    max_tokens=max_tokens)
                       for shape, count in zip(chosen, counts, strict=True))
        result = SweepResult(dimension, points)
        record_sweep(result, first_call, request, llmperf_server, llmperf_settings,
                     llmperf_recorder)
        return result

    return sweep


@pytest.fixture
def llmperf_capacity(llmperf_server: ServedModel, llmperf_prompts: PromptSource,
                     llmperf_settings: Settings, llmperf_recorder: ResultRecorder,
                     llmperf_telemetry: Telemetry, request: pytest.FixtureRequest,
                     pytestconfig: pytest.Config) -> CapacityFunction:
    from pytest_llmperf.plugin.fixtures import live_server
    from pytest_llmperf.plugin.slo_check import test_checks
    from pytest_llmperf.report.entry import capacity_entry
    from pytest_llmperf.searches.capacity import search_capacity

    progress = _terminal_progress(pytestconfig)

    def capacity(dimension: str = "users", *, start: float | None = None,
                 maximum: float | None = None, budget_s: float | None = None,
                 requests: int | None = None, shape: LoadShape | None = None,
                 max_tokens: int | None = None, probe_s: float = 10.0) -> CapacityResult:
        if dimension not in ("users", "rate"):
            raise ValueError(f"llmperf_capacity searches users or rate, not {dimension!r}")
        settings = llmperf_settings
        base = shape or (closed_shape(settings, 1) if dimension == "users"
                         else open_shape(settings, 1.0))
        if base.is_open != (dimension == "rate"):
            raise ValueError(f"a {dimension} search needs a "
                             f"{'open' if dimension == 'rate' else 'closed'}-loop shape")
        served = live_server(llmperf_server, llmperf_recorder, llmperf_telemetry)
        checks = test_checks(request, served)
        probe = _prober(served, llmperf_prompts, settings, llmperf_telemetry, base,
                        checks, requests or settings.probe_requests,
                        max_tokens or settings.max_tokens, progress, dimension, probe_s)
        result = search_capacity(
            probe, dimension=dimension,
            start=start if start is not None else 1.0,
            maximum=maximum if maximum is not None else (
                settings.capacity_max_users if dimension == "users"
                else settings.capacity_max_rate),
            budget_s=budget_s if budget_s is not None else settings.capacity_budget,
            estimate=_estimate(base, requests or settings.probe_requests, settings.warmup,
                               probe_s))
        progress(f"capacity ({dimension}): {result.summary} [{result.elapsed_s:.0f} s]")
        entry = capacity_entry(result, None, _slo_lines(checks))
        _chart(entry, settings, llmperf_recorder, "capacity")
        llmperf_recorder.add_search(result, entry)
        llmperf_recorder.compare_capacity(result)
        return result

    return capacity


def probe_size(shape: LoadShape, requests: int, warmup: int,
               probe_s: float = 10.0) -> tuple[int, int]:
    """Measured and warm-up requests of a probe at ``shape``.

    A closed loop measures ``requests``, at least 2 per user, after one warm-up request per
    user (the server is warm from the probe before; each user's first answer brings it to the
    new load).  An open loop measures at least ``probe_s`` seconds of arrivals (a queue needs
    time to show), ``requests`` when that is longer, up to twice ``probe_s``, and never fewer
    than 8 (what a trend needs), after about ``probe_s`` / 5 seconds of warm-up arrivals.
    """
    if shape.rate is None:
        return max(requests, 2 * (shape.users or 1)), (shape.users or 1) if warmup else 0
    if math.isinf(shape.rate):
        return requests, warmup
    least, most = math.ceil(shape.rate * probe_s), math.ceil(shape.rate * 2 * probe_s)
    return (max(8, min(max(requests, least), most)),
            min(warmup, max(1, math.ceil(shape.rate * probe_s / 5))))


def _estimate(base: LoadShape, requests: int, warmup: int, probe_s: float
              ) -> Callable[[float, Sequence[ProbeOutcome]], float]:
    """How long a probe will take: a closed loop's as long as the longest so far; an open
    loop's its arrivals' span plus the longest tail (last answer after last arrival) so far."""

    def span(load: float) -> float:
        planned, warm = probe_size(base.with_load(load), requests, warmup, probe_s)
        return (planned + warm) / load if math.isfinite(load) else 0.0

    def estimate(load: float, probes: Sequence[ProbeOutcome]) -> float:
        if not base.is_open:
            return max(p.duration_s for p in probes)
        return span(load) + max(max(p.duration_s - span(p.load), 0.0) for p in probes)

    return estimate


def _prober(served: ServedModel, prompts: PromptSource, settings: Settings,
            telemetry: Telemetry, base: LoadShape, checks: tuple[Check, ...], requests: int,
            max_tokens: int, progress: Callable[[str], None],
            dimension: str, probe_s: float) -> Callable[[float], ProbeOutcome]:
    """One probe per call: a measured window at ``load`` judged against ``checks``, stopped
    early once clearly failed; its verdicts never fail the test."""
    from pytest_llmperf.load.runner import run_load
    from pytest_llmperf.plugin.fixtures import _fail_if_server_died, time_limits
    from pytest_llmperf.plugin.slo_check import judge_window
    from pytest_llmperf.searches.capacity import ProbeOutcome
    from pytest_llmperf.searches.probe_rules import clearly_failed, goodput, headroom

    def probe(load: float) -> ProbeOutcome:
        shape = base.with_load(load)
        planned, warmup = probe_size(shape, requests, settings.warmup, probe_s)
        progress(f"capacity ({dimension}): probing {shape.label}, {planned} requests ...")
        began = time.monotonic()
        result = run_load(served, prompts, shape=shape, requests=planned,
                          warmup=warmup, max_tokens=max_tokens, telemetry=telemetry,
                          limits=time_limits(settings),
                          stop=lambda done: clearly_failed(checks, done, planned),
                          progress=progress, progress_label=f"capacity ({dimension}) probe "
                                                            f"{shape.label}",
                          client_processes=settings.client_processes,
                          event_loop=settings.event_loop)
        _fail_if_server_died(served, result)
        verdicts = judge_window(result, checks, settings)
        broke = [v.describe() for v in verdicts if not v.passed]
        if result.overload:
            broke.append(result.overload)
        if result.run.stopped_early and not broke:
            broke.append(f"stopped early: {result.run.stopped_early}")
        outcome = ProbeOutcome(load, not broke, tuple(broke), headroom(verdicts),
                               goodput(result.run, checks), time.monotonic() - began,
                               result.run.stopped_early, result)
        verdict = "pass" if outcome.passed else f"FAIL ({broke[0].split(' -- ')[0]})"
        stopped = ", stopped early" if result.run.stopped_early else ""
        progress(f"capacity ({dimension}): {shape.label}: {verdict}; "
                 f"{result.metrics.value('output_token_throughput') or 0:.1f} tok/s, "
                 f"{len(result.run.records)} requests in {outcome.duration_s:.1f} s{stopped}")
        return outcome

    return probe

"""Fixtures that run many loads: ``llmperf_sweep`` and ``llmperf_capacity``.

- ``llmperf_sweep(users=[1, 2, 4])`` or ``(rates=[0.5, 1, 2])`` or ``(shapes=[...])``: each load
  its own warm-up and measured window, then a table and a chart; ``llmperf_slo.check(sweep)``
  holds every point to the SLOs.
- ``llmperf_stages("1:60,1..4:30,4:120")``: staged (and ramped) rates as one schedule, one
  window per stage (load.staged), then the same table and chart; ``llmperf_slo.check(result)``
  holds every stage to the SLOs.  With no stages given, ``--llmperf-rate-stages``'.
- ``llmperf_capacity("users")`` or ``("rate")``: the highest load at which every SLO of the
  test holds (searches.capacity); its probes are judged without failing the test, and
  ``llmperf_slo.check(capacity)`` holds the result to the test's capacity SLOs
  (``capacity_max_concurrency >= 8``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_llmperf.plugin.fixtures import measuring
from pytest_llmperf.plugin.recorder import ResultRecorder
from pytest_llmperf.plugin.slo_check import test_checks

if TYPE_CHECKING:
    from pytest_llmperf.bench.bench import Bench
    from pytest_llmperf.results.capacity import CapacityResult
    from pytest_llmperf.results.load_shape import LoadShape
    from pytest_llmperf.results.rate_stages import RateStage
    from pytest_llmperf.results.sweep import SweepResult
    from pytest_llmperf.results.thresholds import Check

__all__ = ["CapacityFunction", "StagesFunction", "SweepFunction", "record_sweep"]

# Per-load SLO limits drawn on the charts, when the test has them.
_CHART_SLOS = ("ttft_ms.p95", "tpot_ms.p95", "decode_tokens_per_s.mean")


class SweepFunction(Protocol):
    """``llmperf_sweep``'s type, for annotating tests."""

    def __call__(self, *, users: Sequence[int] | None = None,
                 rates: Sequence[float] | None = None,
                 shapes: Sequence[LoadShape] | None = None,
                 requests: int | Sequence[int] | None = None,
                 duration_s: float | None = None,
                 max_tokens: int | None = None) -> SweepResult: ...


class StagesFunction(Protocol):
    """``llmperf_stages``'s type, for annotating tests."""

    def __call__(self, stages: str | Sequence[RateStage] | None = None, *,
                 max_tokens: int | None = None) -> SweepResult: ...


class CapacityFunction(Protocol):
    """``llmperf_capacity``'s type, for annotating tests."""

    def __call__(self, dimension: str = "users", *, start: float | None = None,
                 maximum: float | None = None, budget_s: float | None = None,
                 requests: int | None = None, shape: LoadShape | None = None,
                 max_tokens: int | None = None, probe_s: float = 10.0) -> CapacityResult: ...


def _slo_lines(checks: Sequence[Check]) -> dict[str, float]:
    return {c.key: c.limit for c in checks if c.key in _CHART_SLOS}


def record_sweep(result: SweepResult, request: pytest.FixtureRequest,
                 recorder: ResultRecorder, left_out: str | None = None) -> None:
    """A sweep (its points are windows the recorder has), with its table's figures and chart."""
    from pytest_llmperf.report.load_charts import write_sweep_chart
    from pytest_llmperf.results.recorded import Provenance, RecordedSweep

    served = result.points[0].served
    recorded = RecordedSweep(
        Provenance(recorder.item.nodeid), served, result.dimension, result.rows,
        tuple(recorder.call_of(point) for point in result.points),
        _slo_lines(test_checks(request, served.backend, served.model)), left_out=left_out)
    png = write_sweep_chart(recorded, Path(recorder.chart_path(
        "prefill" if result.dimension == "input_tokens" else "sweep")))
    recorder.record_search(dataclasses.replace(recorded,
                                               chart_png=None if png is None else str(png)))


@pytest.fixture
def llmperf_sweep(llmperf_test_bench: Bench, llmperf_recorder: ResultRecorder,
                  request: pytest.FixtureRequest) -> SweepFunction:
    def sweep(*, users: Sequence[int] | None = None, rates: Sequence[float] | None = None,
              shapes: Sequence[LoadShape] | None = None,
              requests: int | Sequence[int] | None = None, duration_s: float | None = None,
              max_tokens: int | None = None) -> SweepResult:
        """``requests``: one count for every point, or one per point."""
        with measuring(llmperf_recorder):
            result = llmperf_test_bench.sweep(users=users, rates=rates, shapes=shapes,
                                              requests=requests, duration_s=duration_s,
                                              max_tokens=max_tokens)
        for point in result.points:
            llmperf_recorder.compare(point.windows)
        record_sweep(result, request, llmperf_recorder)
        return result

    return sweep


@pytest.fixture
def llmperf_stages(llmperf_test_bench: Bench, llmperf_recorder: ResultRecorder,
                   request: pytest.FixtureRequest) -> StagesFunction:
    def stages(stages: str | Sequence[RateStage] | None = None, *,
               max_tokens: int | None = None) -> SweepResult:
        """``stages``: ``"1:60,1..4:30"`` or RateStage values; None: --llmperf-rate-stages."""
        from pytest_llmperf.results.rate_stages import parse_rate_stages

        chosen = (parse_rate_stages(stages) if isinstance(stages, str)
                  else stages or llmperf_test_bench.load.rate_stages)
        if not chosen:
            raise ValueError("llmperf_stages needs stages: give them (\"1:60,2:60\") or "
                             "--llmperf-rate-stages")
        with measuring(llmperf_recorder):
            result = llmperf_test_bench.stages(chosen, max_tokens=max_tokens,
                                               label=llmperf_recorder.item.name)
        for point in result.points:
            llmperf_recorder.compare(point.windows)
        record_sweep(result, request, llmperf_recorder)
        return result

    return stages


@pytest.fixture
def llmperf_capacity(llmperf_test_bench: Bench, llmperf_recorder: ResultRecorder,
                     request: pytest.FixtureRequest) -> CapacityFunction:
    from pytest_llmperf.report.load_charts import write_capacity_chart
    from pytest_llmperf.results.recorded import Provenance, RecordedCapacity

    def capacity(dimension: str = "users", *, start: float | None = None,
                 maximum: float | None = None, budget_s: float | None = None,
                 requests: int | None = None, shape: LoadShape | None = None,
                 max_tokens: int | None = None, probe_s: float = 10.0) -> CapacityResult:
        served = llmperf_test_bench.served.info
        checks = test_checks(request, served.backend, served.model)
        with measuring(llmperf_recorder):
            result = llmperf_test_bench.capacity(
                dimension, checks, start=start, maximum=maximum, budget_s=budget_s,
                requests=requests, shape=shape, max_tokens=max_tokens, probe_s=probe_s)
        # The shape whose load was searched, as its first probe ran it.
        searched = shape or next(p.window.shape for p in result.probes if p.window is not None)
        recorded = RecordedCapacity(Provenance(llmperf_recorder.item.nodeid), served, searched,
                                    result, _slo_lines(checks))
        png = write_capacity_chart(recorded, Path(llmperf_recorder.chart_path("capacity")))
        llmperf_recorder.record_search(dataclasses.replace(
            recorded, chart_png=None if png is None else str(png)))
        llmperf_recorder.compare_capacity(result)
        return result

    return capacity

"""Staged rates against the real embedded engine: one schedule, one window per stage, each with
its own telemetry and its own share of llama.cpp's counters (the stages' counters add up to
exactly the tokens of every measured request)."""

from __future__ import annotations

import pytest

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.load.shapes import staged_arrivals
from pytest_llmperf.observe.telemetry import Telemetry
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.rate_stages import parse_rate_stages

pytestmark = pytest.mark.integration


def test_each_stage_is_a_window_with_its_own_observations(smollm2_served: ServedModel) -> None:
    shape = LoadShape.staged(parse_rate_stages("1:4,1..3:3"), seed=2)
    _, stage_of = staged_arrivals(shape)
    with Telemetry.for_served(smollm2_served, interval_s=0.25) as telemetry:
        # No warm-up: nothing before the window moves the engine's counters.
        whole = run_load(smollm2_served, BuiltinPrompts(seed=4), shape=shape,
                         duration_s=shape.duration_s, max_tokens=8, telemetry=telemetry)
    first, second = whole.stages
    records = whole.run.records
    assert all(r.ok for r in records), [r.error for r in records]
    assert [first.requests, second.requests] == [stage_of.count(0), stage_of.count(1)]
    assert first.shape == LoadShape.open(1.0, seed=2)
    assert second.shape.label == "1 to 3 req/s ramp over 3 s poisson"
    assert first.run.duration_s >= 4.0 and second.run.duration_s >= 3.0
    for stage in (first, second):
        assert stage.resources is not None and stage.resources.samples >= 2
        assert "server_cpu_mean_pct" in stage.resources.metrics, stage.resources.metrics
        assert stage.server_metrics is not None, stage.server_notes
        assert stage.health is not None
    # The whole run's observers were split, not repeated: no figures of its own.
    assert whole.resources is None and whole.server_metrics is None
    generated = [s.server_metrics["generation_tokens"] for s in (first, second)
                 if s.server_metrics is not None]
    print(f"\nstage requests {first.requests}, {second.requests}; engine's generated tokens "
          f"per stage {generated}; client's {sum(r.output_tokens for r in records)}")
    assert sum(generated) == sum(r.output_tokens for r in records)

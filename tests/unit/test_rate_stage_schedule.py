"""Staged and ramped rates: the option's syntax and its errors, the one schedule of arrivals
(exact for constant arrivals, the stage's rate on average for Poisson ones), the shape's label,
id and stored form, and the cut of one run into a window per stage with what was observed over
each stage."""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import pytest

from pytest_llmperf.load.open_loop import schedule
from pytest_llmperf.load.shapes import arrival_offsets, staged_arrivals
from pytest_llmperf.load.staged import PhasedObservers, StageObservations, stage_windows
from pytest_llmperf.results.health import Health
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.rate_stages import RateStage, parse_rate_stages, stage_starts
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.settings.parsers import rate_stages

S = 1_000_000_000


def test_stages_parse_steady_and_ramped() -> None:
    assert parse_rate_stages("1:60, 0.5..4:30,4:120") == (
        RateStage(1, 1, 60), RateStage(0.5, 4, 30), RateStage(4, 4, 120))
    assert parse_rate_stages("0..2:10")[0].mass == 10  # a ramp's mean rate times its length
    assert RateStage(4, 1, 30).text == "4..1:30" and RateStage(2, 2, 5).text == "2:5"


@pytest.mark.parametrize(("text", "says"), [
    ("1:0", "seconds > 0"), ("2", "RATE:SECONDS"), ("x:3", "RATE:SECONDS"),
    ("0:5", "offers nothing"), ("-1:5", ">= 0"), ("1:inf", "seconds > 0"),
    ("1..:4", "FROM..TO"), ("1..2..3:4", "FROM..TO"), ("1:5,,2:5", "RATE:SECONDS"),
])
def test_a_bad_stage_is_named_with_what_was_expected(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        rate_stages(text)
    assert repr(text.split(",")[0]) in str(caught.value) or "''" in str(caught.value)


def test_a_ramp_inverts_its_cumulative_rate() -> None:
    for stage in (RateStage(1, 4, 30), RateStage(0, 2, 10), RateStage(5, 1, 8)):
        a, b, t = stage.start_rate, stage.end_rate, stage.seconds
        for share in (0.0, 0.1, 0.5, 0.9, 1.0):
            mass = share * stage.mass
            at = stage.seconds_at(mass)
            assert a * at + (b - a) * at * at / (2 * t) == pytest.approx(mass, abs=1e-9)


def test_constant_stages_put_each_arrival_where_its_rate_says() -> None:
    shape = LoadShape.staged(parse_rate_stages("2:5,0..2:2"), arrivals="constant")
    offsets, stage_of = staged_arrivals(shape)
    # 10 arrivals at 2 req/s, then a ramp from 0 whose 2 expected arrivals fall at
    # sqrt(2 * m / slope) seconds into it: m = 0 at its start, m = 1 at sqrt(2).
    assert offsets == pytest.approx([i / 2 for i in range(10)] + [5.0, 5 + math.sqrt(2)])
    assert stage_of == [0] * 10 + [1, 1]
    # Warm-up arrivals at the first stage's rate lead into the first stage.
    warm, measured = schedule(shape, 2, None, None)
    assert measured == 12 and warm[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert arrival_offsets(shape, 3) == offsets[:3]


def test_poisson_stages_offer_each_stage_its_rate_on_average() -> None:
    stages = parse_rate_stages("2:20,2..8:20,8:10")
    counts = [[0, 0, 0] for _ in range(200)]
    ramp_halves = [0, 0]
    for seed, tally in enumerate(counts):
        offsets, stage_of = staged_arrivals(LoadShape.staged(stages, seed=seed))
        assert offsets == sorted(offsets) and offsets[0] == 0.0 and offsets[-1] < 50
        for at, stage in zip(offsets, stage_of, strict=True):
            tally[stage] += 1
            if stage == 1:
                ramp_halves[at >= 30] += 1
    means = [sum(c[i] for c in counts) / len(counts) for i in range(3)]
    # Expected 40, 100 and 80 arrivals; 200 runs put the mean within about 1 %.
    assert means == pytest.approx([40, 100, 80], rel=0.04)
    # The ramp's first half offers 2..5 req/s (35 expected), its second 5..8 (65).
    assert ramp_halves[0] / sum(ramp_halves) == pytest.approx(0.35, abs=0.02)
    # The same seed, the same schedule.
    shape = LoadShape.staged(stages, seed=7)
    assert staged_arrivals(shape) == staged_arrivals(shape)


def test_a_staged_shape_names_itself_and_is_stored_and_read_back() -> None:
    shape = LoadShape.staged(parse_rate_stages("1:60,1..4:30"), seed=3, max_concurrency=8)
    assert shape.rate == pytest.approx((60 + 75) / 90)
    assert shape.duration_s == 90
    assert shape.label == "stages 1:60,1..4:30 poisson, max 8 in flight"
    assert shape.id == "stages-max8"
    stored = shape.to_json()
    assert stored["stages"] == "1:60,1..4:30"
    assert LoadShape.from_json(Fields(stored, "result.json")) == shape
    doubled = shape.with_load(2 * (shape.rate or 0))
    assert doubled.stages == parse_rate_stages("2:60,2..8:30")
    with pytest.raises(ValueError, match="open loop"):
        dataclasses.replace(LoadShape.closed(2), stages=shape.stages)


class Counter:
    """A window observer that counts its windows and when each started."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.ended = 0

    def window_started(self) -> None:
        self.started.append(time.monotonic())

    def window_ended(self) -> None:
        self.ended += 1


def test_observers_see_each_stage_as_a_window_of_its_own() -> None:
    counter = Counter()
    phased = PhasedObservers([counter], [0.1, 0.25],
                             lambda: StageObservations(server_notes=(str(counter.ended),)))
    phased.window_started()
    time.sleep(0.4)
    phased.window_ended()
    assert counter.ended == 3 == len(counter.started)
    gaps = [b - counter.started[0] for b in counter.started[1:]]
    assert gaps == pytest.approx([0.1, 0.25], abs=0.05)
    assert [p.server_notes for p in phased.phases] == [("1",), ("2",), ("3",)]
    assert not any(t.name == "llmperf-stages" and t.is_alive() for t in threading.enumerate())


def test_a_run_ended_before_a_stage_observes_only_the_stages_it_reached() -> None:
    counter = Counter()
    phased = PhasedObservers([counter], [5.0], lambda: StageObservations())
    phased.window_started()
    phased.window_ended()
    assert counter.ended == 1 and len(phased.phases) == 1


def record(request_id: int, due_s: float, took_s: float, base: int) -> RequestRecord:
    due = base + round(due_s * S)
    end = due + round(took_s * S)
    return RequestRecord(request_id, due, (due + S // 100, end), end, 4, input_tokens=5,
                         scheduled_ns=due)


def test_one_run_is_cut_into_a_window_per_stage() -> None:
    shape = LoadShape.staged(parse_rate_stages("2:5,0..2:2"), arrivals="constant")
    offsets, _ = staged_arrivals(shape)
    base = 10 * S
    # Every answer takes 0.2 s but the last, 1 s: past its stage's end.
    records = tuple(record(i, at, 1.0 if i == 11 else 0.2, base)
                    for i, at in enumerate(offsets))
    whole = WindowResult(
        served=ServedInfo("openai", "stub", "stub"), shape=shape, max_tokens=4,
        run=LoadRun(records, base, records[-1].end_ns, 1, warmup_requests=2),
        health=Health({"client_cpu_pct": 3.0, "send_late_ms_p99": 99.0}))
    seen = StageObservations(server_metrics={"prompt_tokens": 50.0},
                             health_figures={"client_cpu_pct": 95.0})
    first, second = stage_windows(whole, [seen])
    assert [r.request_id for r in first.run.records] == list(range(10))
    assert [r.request_id for r in second.run.records] == [10, 11]
    # Each window spans its stage's scheduled time, or to its last answer when later.
    assert first.run.window_start_ns == base and first.run.duration_s == pytest.approx(5.0)
    assert second.run.window_start_ns == base + 5 * S
    assert second.run.duration_s == pytest.approx(math.sqrt(2) + 1.0)
    assert first.run.warmup_requests == 2 and second.run.warmup_requests == 0
    assert first.shape == LoadShape.open(2.0, arrivals="constant")
    assert second.shape.stages == (RateStage(0, 2, 2),) and second.shape.rate == 1.0
    assert first.metrics.value("request_throughput") == pytest.approx(2.0)
    # What was observed over the first stage is its own; the second's, not observed,
    # falls back to the run's health figures (its lateness is its own requests').
    assert first.server_metrics == {"prompt_tokens": 50.0}
    assert first.health is not None and first.health.client_bound  # 95 % client CPU
    assert second.server_metrics is None and second.health is not None
    assert second.health.figures["client_cpu_pct"] == 3.0
    assert second.health.figures["send_late_ms_p99"] == 0.0
    assert stage_starts(shape.stages) == (0.0, 5.0)

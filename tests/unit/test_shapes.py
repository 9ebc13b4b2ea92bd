"""Load shapes and their arrival schedules: validation, names, and the distributions drawn.

Distribution checks use the Kolmogorov-Smirnov test at a 1 % level on seeded schedules (a
seed is fixed, so each check is deterministic; 1 % is the chance a correct generator would
fail one, had the seed been drawn at random).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pytest_llmperf.load.shapes import arrival_offsets
from pytest_llmperf.results.load_shape import LoadShape

N = 4000


def gaps(shape: LoadShape, n: int = N) -> np.ndarray:
    return np.diff(arrival_offsets(shape, n + 1))


def test_poisson_gaps_are_exponential_with_the_rate_asked_for() -> None:
    shape = LoadShape.open(4.0, seed=7)
    drawn = gaps(shape)
    assert stats.kstest(drawn, "expon", args=(0, 1 / 4.0)).pvalue > 0.01
    # The mean gap is 1/rate to within 3 standard errors (sd of an exponential = its mean).
    assert abs(drawn.mean() - 0.25) < 3 * 0.25 / math.sqrt(N)


@pytest.mark.parametrize("burstiness", [0.25, 0.5, 2.0, 8.0])
def test_gamma_gaps_have_the_burstiness_as_shape_and_keep_the_mean(burstiness: float) -> None:
    shape = LoadShape.open(2.0, burstiness=burstiness, seed=11)
    assert shape.arrivals == "gamma"
    drawn = gaps(shape)
    scale = 0.5 / burstiness
    assert stats.kstest(drawn, "gamma", args=(burstiness, 0, scale)).pvalue > 0.01
    # Mean 1/rate whatever the burstiness; coefficient of variation 1/sqrt(burstiness).
    sd = 0.5 / math.sqrt(burstiness)
    assert abs(drawn.mean() - 0.5) < 3 * sd / math.sqrt(N)
    assert drawn.std() / drawn.mean() == pytest.approx(1 / math.sqrt(burstiness), rel=0.1)


def test_poisson_counts_per_second_are_poisson() -> None:
    # A chi-square test of arrivals per 1 s bin against Poisson(rate): a Poisson *process*,
    # not only exponential gaps.
    rate = 5.0
    offsets = np.array(arrival_offsets(LoadShape.open(rate, seed=3), 20_000))
    counts = np.bincount(offsets[offsets < int(offsets[-1])].astype(int))
    observed = np.bincount(counts, minlength=16)[:16].astype(float)
    observed[-1] += (counts >= 16).sum()
    expected = stats.poisson.pmf(np.arange(16), rate) * len(counts)
    expected[-1] += stats.poisson.sf(15, rate) * len(counts)
    assert stats.chisquare(observed, expected).pvalue > 0.01


def test_constant_arrivals_are_evenly_spaced_and_infinite_rate_is_all_at_once() -> None:
    assert arrival_offsets(LoadShape.open(4.0, arrivals="constant"), 5) == pytest.approx(
        [0.0, 0.25, 0.5, 0.75, 1.0])
    assert arrival_offsets(LoadShape.open(math.inf), 3) == [0.0, 0.0, 0.0]


def test_the_seed_fixes_the_schedule() -> None:
    one = arrival_offsets(LoadShape.open(2.0, seed=5), 50)
    assert one == arrival_offsets(LoadShape.open(2.0, seed=5), 50)
    assert one != arrival_offsets(LoadShape.open(2.0, seed=6), 50)
    # A longer schedule starts with the shorter one: asking for more requests keeps the first.
    assert arrival_offsets(LoadShape.open(2.0, seed=5), 80)[:50] == pytest.approx(one)


@pytest.mark.parametrize(("shape", "label", "ident"), [
    (LoadShape.closed(1), "1 user", "users1"),
    (LoadShape.closed(4, ramp_s=10), "4 users, 10 s ramp", "users4-ramp10"),
    (LoadShape.open(2), "2 req/s poisson", "rate2"),
    (LoadShape.open(0.5, burstiness=0.5), "0.5 req/s gamma (burstiness 0.5)", "rate0.5-b0.5"),
    (LoadShape.open(3, arrivals="constant"), "3 req/s constant", "rate3-constant"),
    (LoadShape.open(math.inf, max_concurrency=8), "inf req/s, max 8 in flight", "rateinf-max8"),
])
def test_labels_and_ids_name_the_load(shape: LoadShape, label: str, ident: str) -> None:
    assert (shape.label, shape.id) == (label, ident)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "users (closed loop) or a rate"),
    ({"users": 2, "rate": 1.0}, "users (closed loop) or a rate"),
    ({"users": 0}, "users must be >= 1, got 0"),
    ({"rate": 0.0}, "rate must be > 0"),
    ({"rate": 1.0, "burstiness": 0.0}, "burstiness must be a number > 0"),
    ({"rate": 1.0, "max_concurrency": 0}, "max_concurrency must be >= 1"),
    ({"rate": 1.0, "ramp_s": 5.0}, "ramp_s is for closed loops"),
    ({"rate": 1.0, "arrivals": "uniform"}, "arrivals must be one of constant, poisson, gamma"),
])
def test_an_impossible_shape_says_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LoadShape(**kwargs)  # type: ignore[arg-type]


def test_with_load_keeps_the_shape() -> None:
    assert LoadShape.closed(2, ramp_s=3).with_load(8) == LoadShape.closed(8, ramp_s=3)
    shape = LoadShape.open(1.0, burstiness=2.0, max_concurrency=4, seed=9)
    assert shape.with_load(3.0) == LoadShape.open(3.0, burstiness=2.0, max_concurrency=4,
                                                  seed=9)

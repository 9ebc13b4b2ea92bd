"""Statistical inference: exact checks on small cases, then seeded simulations.

The simulations are deterministic (fixed seeds) and print what they measure; run with
``pytest -s`` to see the tables.  Model of per-request TPOT: a lognormal body (sdlog 0.10, a
conservative spread; the real llama.cpp server measured 0.033 single-user) with a tail of 5 % of
requests 1.5x slower.  A "true 10 % shift" multiplies every current value by 1.10.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import pytest

from pytest_llmperf.results import statistics as st
from pytest_llmperf.results.statistics import (
    CONFIDENCE,
    IMPROVED,
    INCONCLUSIVE,
    NO_CHANGE,
    REGRESSED,
    block_length,
    change_verdict,
    min_samples,
    percentile_bound,
    percentile_interval,
    quantile_lower_rank,
    quantile_upper_rank,
    ratio_interval,
    requests_to_settle,
    samples_needed,
    windows_interval,
)

# --------------------------------------------------------------------------------------------
# Exact order-statistic bounds


@functools.cache
def _exact_cdf(n: int, q: float) -> list[Fraction]:
    """P(Binom(n, q) <= k) for k = 0..n, in exact rational arithmetic."""
    p = Fraction(q)
    return list(itertools.accumulate(math.comb(n, k) * p**k * (1 - p) ** (n - k)
                                     for k in range(n + 1)))


def _reaches(probability: Fraction, confidence: float) -> bool:
    # The module counts a tie (up to 1e-12 rounding) as reaching the confidence.
    return probability >= Fraction(confidence) - Fraction(1, 10**12)


def _brute_upper(n: int, q: float, confidence: float) -> int | None:
    cdf = _exact_cdf(n, q)
    return next((u for u in range(1, n + 1) if _reaches(cdf[u - 1], confidence)), None)


def _brute_lower(n: int, q: float, confidence: float) -> int | None:
    cdf = _exact_cdf(n, q)  # P(X >= l) = 1 - P(X <= l - 1)
    ranks = [rank for rank in range(1, n + 1) if _reaches(1 - cdf[rank - 1], confidence)]
    return max(ranks) if ranks else None


@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
@pytest.mark.parametrize("q", [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
def test_ranks_match_brute_force_binomial(q: float, confidence: float) -> None:
    for n in range(1, 61):
        assert quantile_upper_rank(n, q, confidence) == _brute_upper(n, q, confidence), n
        assert quantile_lower_rank(n, q, confidence) == _brute_lower(n, q, confidence), n


def test_ranks_on_large_samples_match_direct_log_space_sum() -> None:
    # Independent check of the recurrence: sum the pmf from math.lgamma directly.
    n, q = 5000, 0.99
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(q) + (n - k) * math.log1p(-q) for k in range(n + 1)]
    cdf = np.cumsum(np.exp(logs))
    expected_upper = int(np.searchsorted(cdf, 0.95)) + 1
    survival = 1.0 - np.concatenate(([0.0], cdf[:-1]))  # survival[l] = P(X >= l), l = 0..n
    expected_lower = int(np.count_nonzero(survival >= 0.95)) - 1
    assert quantile_upper_rank(n, q) == expected_upper
    assert quantile_lower_rank(n, q) == expected_lower
    # And the normal approximation for a million samples: n q + 1.645 sd, within a few ranks.
    big, sd = 10**6, math.sqrt(10**6 * 0.99 * 0.01)
    upper = quantile_upper_rank(big, 0.99)
    assert upper is not None and abs(upper - (0.99 * big + 1.645 * sd)) < 3


def test_rank_edge_cases() -> None:
    assert quantile_upper_rank(0, 0.5) is None
    assert quantile_lower_rank(0, 0.5) is None
    assert quantile_upper_rank(58, 0.95) is None
    assert quantile_upper_rank(59, 0.95) == 59
    assert quantile_lower_rank(59, 0.05) == 1
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            quantile_upper_rank(10, bad)
        with pytest.raises(ValueError, match="between 0 and 1"):
            quantile_lower_rank(10, 0.5, bad)


def test_min_samples_known_values() -> None:
    assert min_samples(0.90, "upper") == 29
    assert min_samples(0.95, "upper") == 59
    assert min_samples(0.99, "upper") == 299
    assert min_samples(0.999, "upper") == 2995
    assert min_samples(0.05, "lower") == 59
    assert min_samples(0.95, "upper", 0.99) == 90
    with pytest.raises(ValueError, match="side"):
        min_samples(0.95, "both")  # type: ignore[arg-type]


@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99, 0.1, 0.01])
def test_min_samples_is_where_the_rank_starts_to_exist(q: float, confidence: float) -> None:
    for side, rank in (("upper", quantile_upper_rank), ("lower", quantile_lower_rank)):
        n = min_samples(q, side, confidence)  # type: ignore[arg-type]
        assert rank(n, q, confidence) is not None
        assert n == 1 or rank(n - 1, q, confidence) is None


def test_percentile_bound_picks_the_order_statistic() -> None:
    rng = np.random.default_rng(3)
    values = [float(v) for v in rng.permutation(np.arange(1, 101))]
    upper = quantile_upper_rank(100, 0.9)
    lower = quantile_lower_rank(100, 0.9)
    assert upper is not None and lower is not None
    assert percentile_bound(values, 0.9, "upper") == float(upper)
    assert percentile_bound(values, 0.9, "lower") == float(lower)
    assert lower < np.percentile(values, 90) < upper
    assert percentile_bound(values[:58], 0.95, "upper") is None
    assert percentile_bound(values[:59], 0.95, "upper") == max(values[:59])
    assert percentile_bound([], 0.5, "upper") is None


def test_percentile_interval() -> None:
    rng = np.random.default_rng(4)
    values = list(rng.lognormal(0.0, 0.1, 500))
    interval = percentile_interval(values, 0.95)
    assert interval is not None
    low, high = interval
    assert low == percentile_bound(values, 0.95, "lower", 0.975)
    assert high == percentile_bound(values, 0.95, "upper", 0.975)
    assert low < np.percentile(values, 95) < high
    assert percentile_interval(values[:60], 0.95) is None  # upper side needs 72 at 97.5 %


def _passes_at(size: int, beyond: int, n: int, q: float, side: str) -> bool:
    count = -(-beyond * size // n)
    if side == "upper":
        rank = quantile_upper_rank(size, q)
        return rank is not None and rank <= size - count
    rank = quantile_lower_rank(size, q)
    return rank is not None and rank > count


@pytest.mark.parametrize(("beyond", "n", "q"), [(2, 100, 0.95), (1, 100, 0.95),
                                                (3, 100, 0.95), (5, 1000, 0.99)])
def test_samples_needed_against_linear_scan(beyond: int, n: int, q: float) -> None:
    values = [1.0] * (n - beyond) + [5.0] * beyond  # limit 2.0: `beyond` values above it
    needed = samples_needed(values, q, 2.0, "upper")
    # Integer rounding makes pass/fail flicker over a band of sizes: the answer is a size that
    # passes, one below it fails, and it lies between the first pass and the last failure.
    verdicts = [_passes_at(size, beyond, n, q, "upper") for size in range(1, 3_000)]
    first, last_fail = verdicts.index(True) + 1, len(verdicts) - verdicts[::-1].index(False)
    print(f"\n{beyond}/{n} beyond a p{100 * q:g} limit: samples_needed {needed}, "
          f"flicker band {first}-{last_fail + 1}")
    assert needed is not None and first <= needed <= last_fail + 1
    assert verdicts[needed - 1] and not verdicts[needed - 2]
    assert samples_needed([-v for v in values], 1.0 - q, -2.0, "lower") == needed  # mirror


def test_samples_needed_edge_cases() -> None:
    assert samples_needed([1.0] * 10, 0.95, 2.0, "upper") == 59  # nothing beyond the limit
    assert samples_needed([3.0] * 10, 0.05, 2.0, "lower") == 59
    assert samples_needed([1.0] * 9 + [2.0], 0.95, 2.0, "upper") is None  # 10 % >= limit
    assert samples_needed([1.0] * 95 + [3.0] * 5, 0.95, 2.0, "upper") is None  # exactly 5 %
    assert samples_needed([3.0] * 10 + [2.0] * 90, 0.9, 2.0, "lower") is None  # 90 % <= limit
    # 4.9 % beyond the limit: a long way off, but found (near the normal approximation).
    needed = samples_needed([1.0] * 951 + [3.0] * 49, 0.95, 2.0, "upper")
    assert needed is not None and 120_000 < needed < 140_000  # 1.645^2 .0475 / .001^2
    with pytest.raises(ValueError, match="no values"):
        samples_needed([], 0.95, 1.0, "upper")
    with pytest.raises(ValueError, match="side"):
        samples_needed([1.0], 0.95, 1.0, "middle")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Bootstrap of the ratio


@pytest.mark.parametrize(("n", "users", "expected"), [
    (1, 1, 1), (3, 1, 1), (8, 4, 2), (32, 1, 3), (64, 1, 4), (128, 1, 5), (1000, 1, 10),
    (32, 8, 8), (32, 16, 8), (1000, 16, 16),
])
def test_block_length(n: int, users: int, expected: int) -> None:
    assert block_length(n, users) == expected


def test_block_length_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        block_length(0, 1)
    with pytest.raises(ValueError):
        block_length(10, 0)


def _tpot(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-request TPOT model: lognormal body (sdlog 0.10), 5 % of requests 1.5x slower."""
    return rng.lognormal(0.0, 0.10, n) * np.where(rng.random(n) < 0.05, 1.5, 1.0)


def _samples(windows: list[list[float]], block: int | None, users: int = 1) -> np.ndarray:
    """The bootstrap samples themselves (the statistic is replaced by a recorder)."""
    seen: list[np.ndarray] = []

    def record(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return np.asarray(x[:, 0], dtype=float)

    st._replicates(windows, record, users, block, 200, np.random.default_rng(0))
    return seen[0]


@pytest.mark.parametrize(("n", "block"), [(10, 3), (12, 4), (7, 7), (5, 1), (4, 9)])
def test_block_bootstrap_copies_circular_runs(n: int, block: int) -> None:
    samples = _samples([[float(i) for i in range(n)]], block)
    assert samples.shape == (200, n)
    for row in samples.astype(int):
        for start in range(0, n, block):  # each block: consecutive values, wrapping at the end
            run = row[start:start + block]
            assert list(run) == [(run[0] + j) % n for j in range(len(run))]
    assert len(np.unique(samples[:, 0])) == n  # every start position is drawn


def test_block_bootstrap_draws_whole_windows() -> None:
    # Window i holds the values 100 i + 0..; each drawn slot must come from one window.
    windows = [[100.0 * i + j for j in range(size)] for i, size in enumerate((12, 20, 16))]
    samples = _samples(windows, None)
    assert samples.shape == (200, 3 * 12)  # three slots of the shortest window's length
    slots = (samples.reshape(200, 3, 12) // 100).astype(int)
    assert np.all(slots == slots[:, :, :1])
    assert set(np.unique(slots)) == {0, 1, 2}
    assert np.any([len(set(row[:, 0])) < 3 for row in slots])  # drawn with replacement
    # Block lengths follow each window's own length (12 -> 2, 20 and 16 -> 3): consecutive
    # runs, wrapping at that window's end.
    sizes, blocks = (12, 20, 16), [block_length(size, 1) for size in (12, 20, 16)]
    assert blocks == [2, 3, 3]
    for row in samples.reshape(200, 3, 12).astype(int):
        for slot in row:
            window = slot[0] // 100
            size, block = sizes[window], blocks[window]
            for start in range(0, 12, block):
                run = slot[start:start + block] - 100 * window
                assert list(run) == [(run[0] + j) % size for j in range(len(run))]


def test_ratio_interval_is_deterministic_and_sensible() -> None:
    rng = np.random.default_rng(5)
    base, cur = list(_tpot(rng, 200)), list(_tpot(rng, 200) * 1.5)
    first = ratio_interval([base], [cur], "mean", seed=1)
    assert first == ratio_interval([base], [cur], "mean", seed=1)
    assert first != ratio_interval([base], [cur], "mean", seed=2)
    assert 1.3 < first[0] < 1.5 < first[1] < 1.7
    same = ratio_interval([base], [base], "median")
    assert same[0] < 1.0 < same[1]
    for statistic in ("p50", "p95", "p99.9", "median"):
        low, high = ratio_interval([base], [cur], statistic, users=4)
        assert 1.0 < low <= high


def test_ratio_interval_is_scale_equivariant() -> None:
    # The simulations below rely on this: same seed, current x 1.10 -> interval x 1.10.
    rng = np.random.default_rng(6)
    base, cur = list(_tpot(rng, 64)), _tpot(rng, 64)
    for statistic in ("mean", "p95"):
        low, high = ratio_interval([base], [list(cur)], statistic, resamples=500, seed=9)
        shifted = ratio_interval([base], [list(cur * 1.10)], statistic, resamples=500, seed=9)
        assert shifted == pytest.approx((low * 1.10, high * 1.10), rel=1e-12)


def test_ratio_interval_with_several_windows() -> None:
    rng = np.random.default_rng(7)
    # Repeats whose level differs from run to run: redrawing windows must widen the interval.
    base = [list(_tpot(rng, 100) * level) for level in (0.9, 1.0, 1.1)]
    cur = [list(_tpot(rng, 80) * level) for level in (0.95, 1.05, 1.0, 1.1)]  # unequal sizes
    low, high = ratio_interval(base, cur, "mean", users=2)
    pooled = ratio_interval([list(itertools.chain(*base))], [list(itertools.chain(*cur))], "mean",
                            users=2)
    assert low < pooled[0] and pooled[1] < high
    assert low < 1.0333 < high  # the true ratio of the levels' means
    assert ratio_interval(base, cur, "p90", block=1) != ratio_interval(base, cur, "p90")


def test_ratio_interval_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        ratio_interval([[1.0, 2.0], []], [[1.0]], "mean")
    with pytest.raises(ValueError, match="at least one window"):
        ratio_interval([], [[1.0]], "mean")
    for name in ("max", "p101", "p", "P95", "mean "):
        with pytest.raises(ValueError, match="unknown statistic"):
            ratio_interval([[1.0]], [[1.0]], name)
    with pytest.raises(ValueError, match="baseline statistic is 0"):
        ratio_interval([[0.0] * 8], [[1.0] * 8], "median")
    with pytest.raises(ValueError, match="between 0 and 1"):
        ratio_interval([[1.0]], [[1.0]], "mean", confidence=95)
    with pytest.raises(ValueError, match="block length"):
        ratio_interval([[1.0]], [[1.0]], "mean", block=0)


def test_ratio_interval_is_fast() -> None:
    rng = np.random.default_rng(8)
    base, cur = list(_tpot(rng, 1000)), list(_tpot(rng, 1000))
    for statistic in ("mean", "p95"):
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            ratio_interval([base], [cur], statistic, resamples=2000)
            best = min(best, time.perf_counter() - start)
        print(f"\nratio_interval {statistic}, 2000 resamples, 2 x 1000 values: {best:.3f} s")
        assert best < 0.5


# --------------------------------------------------------------------------------------------
# Welch interval for whole-window numbers


def test_windows_interval_hand_computed() -> None:
    # log baseline = (0, 0.2): mean 0.1, s^2 0.02; log current = (0.1, 0.3, 0.5): mean 0.3,
    # s^2 0.04.  se^2 = 0.02/2 + 0.04/3 = 7/300.  Welch df = (7/300)^2 / (0.01^2/1
    # + (0.04/3)^2/2) = 2.88, rounded down to 2: t = 4.303.  exp(0.2 -+ 4.303 sqrt(7/300)).
    interval = windows_interval([1.0, math.exp(0.2)],
                                [math.exp(0.1), math.exp(0.3), math.exp(0.5)])
    assert interval is not None
    low, high = interval
    half = 4.303 * math.sqrt(7.0 / 300.0)
    assert (low, high) == pytest.approx((math.exp(0.2 - half), math.exp(0.2 + half)))
    assert (low, high) == pytest.approx((0.63299, 2.35677), abs=1e-5)
    narrower = windows_interval([1.0, math.exp(0.2)],
                                [math.exp(0.1), math.exp(0.3), math.exp(0.5)], 0.90)
    assert narrower is not None and low < narrower[0] < narrower[1] < high


def test_one_window_against_several_gets_a_prediction_interval() -> None:
    # log values 0, 0.2, 0.4: mean 0.2, sd 0.2; one more window: 0.2 * sqrt(1 + 1/3), t(2).
    runs = [1.0, math.exp(0.2), math.exp(0.4)]
    half = 4.303 * 0.2 * math.sqrt(4 / 3)
    low, high = windows_interval(runs, [math.exp(0.5)]) or (0.0, 0.0)
    assert (math.log(low), math.log(high)) == pytest.approx((0.3 - half, 0.3 + half), abs=1e-3)
    low, high = windows_interval([math.exp(0.5)], runs) or (0.0, 0.0)
    assert (math.log(low), math.log(high)) == pytest.approx((-0.3 - half, -0.3 + half),
                                                            abs=1e-3)


def test_windows_interval_edge_cases() -> None:
    assert windows_interval([1.0], [1.0]) is None
    assert windows_interval([1.0, 0.0], [1.0, 2.0]) is None
    assert windows_interval([1.0, -1.0], [1.0, 2.0]) is None
    assert windows_interval([2.0, 2.0], [3.0, 3.0]) == pytest.approx((1.5, 1.5))
    with pytest.raises(ValueError, match="unsupported confidence"):
        windows_interval([1.0, 2.0], [1.0, 2.0], 0.8)


def _t_coverage(t: float, df: float) -> float:
    """P(|T| <= t) for Student's t with df degrees of freedom (Simpson's rule)."""
    if math.isinf(df):
        return math.erf(t / math.sqrt(2.0))
    x = np.linspace(0.0, t, 200_001)
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = scale * (1.0 + x * x / df) ** (-(df + 1) / 2)
    h = x[1] - x[0]
    return float(2.0 * h / 3.0 * (f[0] + f[-1] + 4.0 * f[1:-1:2].sum() + 2.0 * f[2:-1:2].sum()))


def test_t_table_is_correctly_rounded() -> None:
    for confidence, row in st._T_TABLE.items():
        assert len(row) == len(st._T_DF)
        for df, t in zip(st._T_DF, row, strict=True):
            # The exact critical value lies within half a unit of the last printed digit.
            assert _t_coverage(t - 0.0005, df) < confidence < _t_coverage(t + 0.0005, df), (
                confidence, df, t)


# --------------------------------------------------------------------------------------------
# Verdicts


@pytest.mark.parametrize(("low", "high", "tolerance", "higher_is_better", "expected"), [
    (1.06, 1.10, 0.05, False, REGRESSED),
    (0.90, 0.94, 0.05, False, IMPROVED),
    (0.97, 1.03, 0.05, False, NO_CHANGE),
    (1.00, 1.08, 0.05, False, INCONCLUSIVE),
    (0.93, 1.07, 0.05, False, INCONCLUSIVE),
    (0.90, 0.97, 0.05, False, INCONCLUSIVE),
    (1.06, 1.10, 0.05, True, IMPROVED),
    (0.90, 0.94, 0.05, True, REGRESSED),
    (0.97, 1.03, 0.05, True, NO_CHANGE),
    (1.25, 1.25, 0.25, False, NO_CHANGE),  # exactly on the tolerance: within it
    (0.75, 1.25, 0.25, True, NO_CHANGE),
    (1.25, 1.5, 0.25, False, INCONCLUSIVE),
    (1.01, 1.20, 0.0, False, REGRESSED),
    (0.80, 0.99, 0.0, False, IMPROVED),
    (0.99, 1.01, 0.0, False, NO_CHANGE),
    (1.00, 1.00, 0.0, True, NO_CHANGE),
    (1.00, 1.50, 0.0, False, NO_CHANGE),  # touches 0: not significant
])
def test_change_verdict(low: float, high: float, tolerance: float, higher_is_better: bool,
                        expected: str) -> None:
    assert change_verdict(low, high, tolerance, higher_is_better) == expected


def test_change_verdict_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        change_verdict(1.1, 1.0, 0.05, False)
    with pytest.raises(ValueError):
        change_verdict(1.0, 1.1, -0.05, False)
    with pytest.raises(ValueError):
        change_verdict(math.nan, 1.1, 0.05, False)


def test_requests_to_settle() -> None:
    # No change at all, tolerance 12.5 %, half-width 25 %: needs the width halved -> 4 x n.
    assert requests_to_settle(32, 0.75, 1.25, 1.0, 0.125) == 128
    # +50 % against a 25 % tolerance, half-width 25 %: already as wide as the margin.
    assert requests_to_settle(32, 1.25, 1.75, 1.5, 0.25) == 32
    assert requests_to_settle(10, 0.5, 1.5, 0.75, 0.125) == 160  # -25 %: margin 1/8, hw 1/2
    assert requests_to_settle(32, 1.0, 1.1, 1.05, 0.05) is None  # change == tolerance
    with pytest.raises(ValueError):
        requests_to_settle(0, 1.0, 1.1, 1.05, 0.05)
    with pytest.raises(ValueError):
        requests_to_settle(10, 1.2, 1.1, 1.05, 0.05)


# --------------------------------------------------------------------------------------------
# Seeded simulations

SIZES = (32, 64, 128)
TRIALS = {"mean": 2000, "p95": 400}  # a p95 replicate costs twice a mean's
RESAMPLES = 1000
SHIFT = 1.10


class Cell(NamedTuple):
    detection: float  # true +10 % shift: share of trials judged "regressed"
    regressed: float  # identical distributions: share judged "regressed" (false positive)
    improved: float  # identical distributions: share judged "improved"
    coverage: float  # share of intervals containing the true ratio 1.10

    @property
    def false_positives(self) -> float:
        """The one-sided false-positive rate from both tails: with identical distributions
        baseline and current are exchangeable, so "improved" is as likely as "regressed", and
        averaging the two halves the Monte Carlo variance of the estimate."""
        return (self.regressed + self.improved) / 2


@functools.cache
def _comparison(statistic: str, n: int) -> Cell:
    """One window of n requests per side, seeded trials.

    One bootstrap per trial serves every column: the shifted current window is the unshifted
    one times 1.10, and with the same seed its interval is exactly 1.10 times the unshifted one
    (test_ratio_interval_is_scale_equivariant).  So with [low, high] the interval for identical
    distributions: "regressed" <=> low > 1; detected <=> 1.10 low > 1; the shifted interval
    covers the true ratio 1.10 <=> low <= 1 <= high."""
    rng = np.random.default_rng(1000 + n)
    detected = regressed = improved = covered = 0
    trials = TRIALS[statistic]
    for trial in range(trials):
        base, cur = list(_tpot(rng, n)), list(_tpot(rng, n))
        low, high = ratio_interval([base], [cur], statistic, resamples=RESAMPLES, seed=trial)
        verdict = change_verdict(low, high, 0.0, False)
        regressed += verdict == REGRESSED
        improved += verdict == IMPROVED
        detected += change_verdict(low * SHIFT, high * SHIFT, 0.0, False) == REGRESSED
        covered += low * SHIFT <= SHIFT <= high * SHIFT
    return Cell(detected / trials, regressed / trials, improved / trials, covered / trials)


@functools.cache
def _table(statistic: str) -> dict[int, Cell]:
    rows = {n: _comparison(statistic, n) for n in SIZES}
    print(f"\n{statistic}: true +10 % shift, one window per side, {TRIALS[statistic]} trials, "
          f"{RESAMPLES} resamples, tolerance 0")
    for n, cell in rows.items():
        print(f"  n={n:4d}  detection {cell.detection:.3f}  false positives "
              f"{cell.false_positives:.3f} (regressed {cell.regressed:.3f}, improved "
              f"{cell.improved:.3f})  95 % coverage {cell.coverage:.3f}")
    return rows


def test_mean_detects_a_ten_percent_shift() -> None:
    rows = _table("mean")
    for cell in rows.values():
        assert cell.false_positives <= 0.05
    # The plugin's default is 64 requests per window: there a true +10 % shift of the mean is
    # caught in >= 90 % of trials.  At 32 it is not (0.77): one request's relative sd is 0.147
    # in this model, so the log-ratio of two means of 32 has sd 0.037 against a shift of 0.095.
    assert rows[64].detection >= 0.90
    assert rows[128].detection >= 0.90


def test_p95_detection_table() -> None:
    rows = _table("p95")
    for cell in rows.values():
        assert cell.false_positives <= 0.05
    # Asked for: detection >= 0.90 at the smallest n of (32, 64, 128) where it holds.  It holds
    # at none: the p95 of this model lies right at the edge of the 5 % slow tail, so the sample
    # p95 jumps between the body's top and the tail's bottom (a ~15 % step) with the number of
    # slow requests drawn.  Measured (200 trials each): 0.41 at n = 512, 0.57 at 1024, 0.83 at
    # 2048.  Assert only that the shift is seen more often than a false alarm.
    for cell in rows.values():
        assert cell.detection > cell.regressed


@pytest.mark.parametrize("statistic", ["mean", "p95"])
def test_ratio_interval_coverage(statistic: str) -> None:
    coverage = _table(statistic)[128].coverage
    print(f"\n{statistic} n=128 coverage of the true ratio 1.10: {coverage:.3f}")
    assert coverage >= 0.93


def _true_quantile(q: float) -> float:
    """The q-quantile of the TPOT model (bisection on its CDF)."""
    def cdf(x: float) -> float:
        def phi(z: float) -> float:
            return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
        return 0.95 * phi(math.log(x) / 0.1) + 0.05 * phi(math.log(x / 1.5) / 0.1)
    low, high = 0.5, 3.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (low, middle) if cdf(middle) >= q else (middle, high)
    return (low + high) / 2


def test_exact_percentile_interval_coverage() -> None:
    rng = np.random.default_rng(11)
    trials, z95 = 2000, 1.6448536269514722
    for name, n, draw, truth in (
        ("lognormal", 200, lambda: rng.lognormal(0.0, 0.1, 200), math.exp(0.1 * z95)),
        ("lognormal", 1000, lambda: rng.lognormal(0.0, 0.1, 1000), math.exp(0.1 * z95)),
        ("TPOT model", 128, lambda: _tpot(rng, 128), _true_quantile(0.95)),
    ):
        hits = 0
        for _ in range(trials):
            interval = percentile_interval(list(draw()), 0.95)
            assert interval is not None
            hits += interval[0] <= truth <= interval[1]
        print(f"\nexact p95 interval, {name}, n={n}: coverage {hits / trials:.3f} ({trials} "
              f"trials, nominal {CONFIDENCE})")
        assert hits / trials >= CONFIDENCE - 0.02


def _closed_loop(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """TPOT model times a slowly varying server state: AR(1) on log scale, state sd 0.1."""
    innovations = rng.normal(0.0, 0.1 * math.sqrt(1.0 - phi * phi), n)
    state = np.empty(n)
    state[0] = rng.normal(0.0, 0.1)
    for i in range(1, n):
        state[i] = phi * state[i - 1] + innovations[i]
    return _tpot(rng, n) * np.exp(state)


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_blocks_keep_false_positives_down_under_dependence(phi: float) -> None:
    n, trials = 64, 500
    rates = {}
    for label, block in (("blocks", None), ("iid", 1)):
        rng = np.random.default_rng(2024)  # the same windows for both methods
        false_pos = 0
        for trial in range(trials):
            base, cur = list(_closed_loop(rng, n, phi)), list(_closed_loop(rng, n, phi))
            low, high = ratio_interval([base], [cur], "mean", resamples=RESAMPLES, seed=trial,
                                       block=block)
            false_pos += change_verdict(low, high, 0.0, False) == REGRESSED
        rates[label] = false_pos / trials
    print(f"\nAR(1) phi={phi}, n={n}, mean, {trials} trials: false positives with blocks of "
          f"{block_length(n, 1)} {rates['blocks']:.3f}, iid bootstrap {rates['iid']:.3f}")
    assert rates["blocks"] <= rates["iid"]
    if phi == 0.5:
        assert rates["blocks"] <= 0.07
    else:
        # Asked for <= 0.07 at phi 0.8: not met.  The correlation lasts ~5 requests (integrated
        # autocorrelation time 9), longer than the block of 4 that n ** (1/3) gives at n = 64:
        # measured 0.09-0.10 (iid 0.15) over 1000-1500 trials, 0.078 with blocks of 8 (users=8).
        # Only the improvement over the iid bootstrap is asserted.
        assert rates["blocks"] < rates["iid"]


def test_a_single_run_borrows_the_run_to_run_spread_of_several() -> None:
    """Each session shifts every request by a session factor (lognormal, sdlog 0.08: the
    engine's own decode time moved 10 % between two sessions on our CI machine).  Nothing else
    changes, so every "regressed" (what fails a gate) is a false positive.  One window against
    one cannot see the session effect; one against K saved runs borrows their spread."""
    rng = np.random.default_rng(77)
    trials, n = 300, 64

    def session() -> list[float]:
        return list(_tpot(rng, n) * rng.lognormal(0.0, 0.08))

    alone = 0
    borrowed = dict.fromkeys((3, 5), 0)
    detected = dict.fromkeys((3, 5), 0)
    for trial in range(trials):
        base_runs = [session() for _ in range(5)]
        current = session()
        low, high = ratio_interval(base_runs[:1], [current], "mean", resamples=500, seed=trial)
        alone += change_verdict(low, high, 0.0, False) == REGRESSED
        for runs in borrowed:
            low, high = ratio_interval(base_runs[:runs], [current], "mean", resamples=500,
                                       seed=trial)
            borrowed[runs] += change_verdict(low, high, 0.0, False) == REGRESSED
            detected[runs] += change_verdict(low * 1.3, high * 1.3, 0.0, False) == REGRESSED
    print(f"\nsession effect sdlog 0.08, n={n}, {trials} trials: false positives one run vs one "
          f"{alone / trials:.3f}")
    for runs in borrowed:
        print(f"  one run vs {runs} saved runs: false positives {borrowed[runs] / trials:.3f}, "
              f"a +30 % shift caught {detected[runs] / trials:.3f}")
    assert alone / trials > 0.25
    assert all(count / trials <= 0.05 for count in borrowed.values())
    assert detected[3] < detected[5]

"""Statistical inference for SLO checks and regression comparisons: pure functions.

Is a percentile SLO supported by the sample?  Of n values, the number below the true
q-quantile is Binomial(n, q), so the u-th smallest value lies at or above the true quantile
with probability P(Binom(n, q) <= u - 1).  The smallest rank u where that reaches the confidence
gives an *upper bound* of the percentile that assumes nothing about the distribution (as MLPerf's
early stopping does); the lower bound is the mirror image.  A bound exists only from a minimum
sample size on (p95: 59, p99: 299 at 95 %).  ``samples_needed`` says how many requests would
put the bound on the passing side of a limit if the share of requests beyond it stayed as now.
Binomial probabilities are exact, summed in log space (the counts left out carry < 1e-40).

Did a statistic change between a baseline and a current run?  ``ratio_interval`` bootstraps the
ratio current / baseline: it redraws each side many times and keeps the middle 95 % of the
ratios.  Requests of one closed-loop window share the server with the other users' requests in
flight, so neighbours (in send order) are not independent: the redraw copies blocks of
consecutive requests (circular block bootstrap), not single requests.  When a side has several
windows (repeats, or several saved runs), the windows are redrawn first, which carries
run-to-run variation into the interval; a side of one window borrows that variation from the
other side's windows.  Whole-window numbers (throughput, one value per window) get Welch's
t-interval on the logarithms (``windows_interval``): an interval of the ratio of geometric means.
``change_verdict`` turns an interval into regressed / improved / no significant change /
inconclusive against a tolerance.  Statistics: "mean", "median", percentiles "pNN" / "pNN.N"
(numpy.percentile's default linear interpolation).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["CONFIDENCE", "IMPROVED", "INCONCLUSIVE", "NO_CHANGE", "REGRESSED", "block_length",
           "change_verdict", "min_samples", "percentile_bound", "percentile_interval",
           "quantile_lower_rank", "quantile_upper_rank", "ratio_interval", "requests_to_settle",
           "samples_needed", "windows_interval"]

CONFIDENCE = 0.95
REGRESSED = "regressed"
IMPROVED = "improved"
NO_CHANGE = "no significant change"
INCONCLUSIVE = "inconclusive"

Side = Literal["upper", "lower"]
_Floats = NDArray[np.float64]
_MAX_SAMPLES = 10**7  # samples_needed looks no further
_TIE = 1e-12  # rounding allowance, so that an exact tie counts as reaching the confidence
_PERCENTILE = re.compile(r"p(\d{1,3}(?:\.\d+)?)")

# Two-sided Student t critical values t_{(1+c)/2, df} for df 1..30, 40, 60, 120 and infinity.
# A df between table entries uses the entry below it (wider interval: conservative).
_T_DF = (*range(1, 31), 40, 60, 120, math.inf)
_T_TABLE: dict[float, tuple[float, ...]] = {
    0.90: (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782,
           1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711,
           1.708, 1.706, 1.703, 1.701, 1.699, 1.697, 1.684, 1.671, 1.658, 1.645),
    0.95: (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
           2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
           2.060, 2.056, 2.052, 2.048, 2.045, 2.042, 2.021, 2.000, 1.980, 1.960),
    0.99: (63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055,
           3.012, 2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797,
           2.787, 2.779, 2.771, 2.763, 2.756, 2.750, 2.704, 2.660, 2.617, 2.576),
}


def _check_unit(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def _binomial(n: int, p: float) -> tuple[int, _Floats]:
    """(lo, probs): P(Binom(n, p) = lo + i) over the counts that carry all but a negligible part."""
    if n < 0:
        raise ValueError(f"sample size must be >= 0, got {n}")
    mu, sd = n * p, math.sqrt(n * p * (1.0 - p))
    lo = max(0, math.floor(mu - 20.0 * sd - 40.0))
    hi = min(n, math.ceil(mu + 20.0 * sd + 40.0))
    k = np.arange(lo, hi, dtype=np.float64)
    # log P(k+1) - log P(k) = log((n-k)/(k+1)) + log(p/(1-p)); exact recurrence in log space.
    steps = np.log((n - k) / (k + 1.0)) + (math.log(p) - math.log1p(-p))
    logp = np.concatenate(([0.0], np.cumsum(steps)))
    weights = np.exp(logp - logp.max())
    return lo, weights / weights.sum()


def quantile_upper_rank(n: int, q: float, confidence: float = CONFIDENCE) -> int | None:
    """Smallest 1-based rank u <= n with P(Binom(n, q) <= u-1) >= confidence, else None."""
    _check_unit("q", q)
    _check_unit("confidence", confidence)
    lo, probs = _binomial(n, q)  # k: the smallest count with P(X <= k) >= confidence
    k = lo + int(np.searchsorted(np.cumsum(probs), confidence - _TIE, side="left"))
    return k + 1 if k + 1 <= n else None


def quantile_lower_rank(n: int, q: float, confidence: float = CONFIDENCE) -> int | None:
    """Largest 1-based rank l >= 1 with P(Binom(n, q) >= l) >= confidence, else None."""
    _check_unit("q", q)
    _check_unit("confidence", confidence)
    lo, probs = _binomial(n, q)
    survival = np.cumsum(probs[::-1])[::-1]  # survival[i] = P(X >= lo + i), non-increasing
    rank = lo + int(np.count_nonzero(survival >= confidence - _TIE)) - 1
    return rank if rank >= 1 else None


def _rank(n: int, q: float, side: Side, confidence: float) -> int | None:
    if side == "upper":
        return quantile_upper_rank(n, q, confidence)
    if side == "lower":
        return quantile_lower_rank(n, q, confidence)
    raise ValueError(f"side must be 'upper' or 'lower', got {side!r}")


def percentile_bound(values: Sequence[float], q: float, side: Side,
                     confidence: float = CONFIDENCE) -> float | None:
    """Distribution-free bound of the q-quantile (an order statistic); None: too few values."""
    rank = _rank(len(values), q, side, confidence)
    return None if rank is None else float(np.sort(np.asarray(values, dtype=float))[rank - 1])


def percentile_interval(values: Sequence[float], q: float,
                        confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided exact interval of the q-quantile (each side at (1 + confidence) / 2)."""
    _check_unit("confidence", confidence)
    low = percentile_bound(values, q, "lower", (1.0 + confidence) / 2.0)
    high = percentile_bound(values, q, "upper", (1.0 + confidence) / 2.0)
    return None if low is None or high is None else (low, high)


def min_samples(q: float, side: Side, confidence: float = CONFIDENCE) -> int:
    """Smallest n for which the bound exists: p**n <= 1 - confidence (p = q upper, 1-q lower)."""
    _rank(1, q, side, confidence)  # validates q, side and confidence
    p = q if side == "upper" else 1.0 - q
    n = max(1, math.ceil(math.log(1.0 - confidence) / math.log(p)))
    while p**n > 1.0 - confidence + _TIE:
        n += 1
    while n > 1 and p ** (n - 1) <= 1.0 - confidence + _TIE:
        n -= 1
    return n


def samples_needed(values: Sequence[float], q: float, limit: float, side: Side,
                   confidence: float = CONFIDENCE) -> int | None:
    """Smallest sample size N at which the bound would pass "percentile < limit" (side "upper")
    or "percentile > limit" ("lower") if the share of values beyond the limit (>= limit for
    upper, <= limit for lower) stayed as now (N * share rounded up); None: never, or not up to
    10**7.  Found by doubling, then bisection: the bound passes at N, fails at N - 1.  Integer
    rounding makes the verdict flicker over a band of sizes (181-208 for 2 % beyond a p95
    limit); N lies in that band, not necessarily at its start."""
    n, start = len(values), min_samples(q, side, confidence)  # validates q, side, confidence
    if n == 0:
        raise ValueError("samples_needed of no values")
    arr = np.asarray(values, dtype=float)  # beyond: how many values lie beyond the limit now
    beyond = int(np.count_nonzero(arr >= limit if side == "upper" else arr <= limit))
    if beyond >= n * (1.0 - q if side == "upper" else q):
        return None

    def passes(size: int) -> bool:
        count = -(-beyond * size // n)  # values beyond the limit at this size, rounded up
        rank = _rank(size, q, side, confidence)
        return rank is not None and (rank <= size - count if side == "upper" else rank > count)

    low = high = start
    while not passes(high):
        if high >= _MAX_SAMPLES:
            return None
        low, high = high, min(2 * high, _MAX_SAMPLES)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if passes(middle) else (middle, high)
    return high


def block_length(n: int, users: int) -> int:
    """Block length for the circular block bootstrap of a window of n requests with ``users``
    concurrent users: max(users, round(n ** (1/3))), at most n // 4 (so >= ~4 blocks), >= 1."""
    if n < 1 or users < 1:
        raise ValueError(f"block_length needs n >= 1 and users >= 1, got n={n}, users={users}")
    return max(1, min(max(users, round(math.pow(n, 1.0 / 3.0))), n // 4))


def _statistic(name: str) -> Callable[[_Floats], _Floats]:
    if name == "mean":
        return lambda x: np.mean(x, axis=1)
    if name == "median":
        return lambda x: np.median(x, axis=1)
    match = _PERCENTILE.fullmatch(name)
    if match is None or not 0.0 <= float(match.group(1)) <= 100.0:
        raise ValueError(f"unknown statistic {name!r} (use mean, median, pNN or pNN.N)")
    q = float(match.group(1))
    return lambda x: np.percentile(x, q, axis=1)


def _replicates(windows: Sequence[Sequence[float]], stat: Callable[[_Floats], _Floats],
                users: int, block: int | None, resamples: int,
                rng: np.random.Generator, chosen: NDArray[np.int64] | None = None) -> _Floats:
    """The statistic of ``resamples`` bootstrap replicates of one side (see ratio_interval)."""
    arrays = [np.asarray(w, dtype=float) for w in windows]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("ratio_interval needs at least one window per side, none of them empty")
    lengths = np.array([a.size for a in arrays])
    blocks = np.array([block if block is not None else block_length(a.size, users)
                       for a in arrays])
    if blocks.min() < 1:
        raise ValueError(f"block length must be >= 1, got {block}")
    # Windows stored repeated, so that no block runs past an end: circular without a modulo.
    reps = 1 + -(-int(blocks.max()) // lengths)
    data = np.concatenate([np.tile(a, r) for a, r in zip(arrays, reps, strict=True)])
    offsets = np.cumsum(lengths * reps) - lengths * reps
    k, size = len(arrays), int(lengths.min())
    if chosen is None:
        chosen = (rng.integers(0, k, size=(resamples, k)) if k >= 2
                  else np.zeros((resamples, 1), dtype=np.int64))
    n_c, b_c = lengths[chosen][..., None], blocks[chosen][..., None]  # (resamples, k, 1)
    count = -(-size // int(blocks.min()))  # blocks per drawn window (enough for the shortest)
    starts = (rng.random((resamples, k, count)) * n_c).astype(np.int64)  # uniform 0..n-1
    starts += offsets[chosen][..., None]
    if np.all(blocks == blocks[0]):  # one block length: lay the blocks side by side
        index = (starts[..., None] + np.arange(blocks[0])).reshape(resamples, k, -1)[..., :size]
    else:
        t = np.arange(size)
        index = np.take_along_axis(starts, np.broadcast_to(t // b_c, (resamples, k, size)),
                                   axis=2) + t % b_c
    return stat(data[index].reshape(resamples, k * size))


def ratio_interval(baseline: Sequence[Sequence[float]], current: Sequence[Sequence[float]],
                   statistic: str, *, users: int = 1, confidence: float = CONFIDENCE,
                   resamples: int = 2000, seed: int = 0,
                   block: int | None = None, paired: bool = False) -> tuple[float, float]:
    """Percentile-bootstrap interval of statistic(current) / statistic(baseline).

    Each side is a list of windows, each window its values in send order.  A replicate of a
    side redraws its windows with replacement (when it has two or more), takes from each drawn
    window a circular block bootstrap sample (block length ``block`` or block_length(window
    length, users)) as long as the side's shortest window, pools them and computes the
    statistic.  A side of one window, against a side of several, is also scaled per replicate
    by a run-to-run factor drawn from the other side's windows.  ``paired`` (both sides the same
    number of windows, the i-th of each measured side by side: an interleaved A/B comparison,
    bench.ab) redraws the pairs, the same draw for both sides, so what the windows of a pair
    share (the machine's state when they ran) cancels in the ratio.  Deterministic for a
    ``seed``."""
    _check_unit("confidence", confidence)
    if resamples < 1 or users < 1:
        raise ValueError("ratio_interval needs resamples >= 1 and users >= 1")
    stat = _statistic(statistic)
    rng = np.random.default_rng(seed)
    chosen = None
    if paired:
        if len(baseline) != len(current):
            raise ValueError(f"paired windows need as many on each side, got {len(baseline)} "
                             f"and {len(current)}")
        k = len(baseline)
        chosen = (rng.integers(0, k, size=(resamples, k)) if k >= 2
                  else np.zeros((resamples, 1), dtype=np.int64))
    base = _replicates(baseline, stat, users, block, resamples, rng, chosen)
    if np.any(base == 0.0):
        raise ValueError(f"ratio undefined: baseline statistic is 0 in a replicate ({statistic})")
    now = _replicates(current, stat, users, block, resamples, rng, chosen)
    # One window on a side cannot show run-to-run variation; when the other side has several,
    # its spread stands in: the single run is one draw of the same between-run variation.
    if len(current) == 1 and len(baseline) >= 2 and not paired:
        now = now * _between_runs(baseline, stat, resamples, rng)
    elif len(baseline) == 1 and len(current) >= 2:
        base = base * _between_runs(current, stat, resamples, rng)
    ratios = now / base
    low, high = np.percentile(ratios, [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)])
    return float(low), float(high)


def _between_runs(windows: Sequence[Sequence[float]], stat: Callable[[_Floats], _Floats],
                  resamples: int, rng: np.random.Generator) -> _Floats:
    """Run-to-run factors for a run of one window: exp(s * T), s the standard deviation of the
    other side's windows' log statistics and T Student's t with (windows - 1) degrees of
    freedom, the predictive spread of one more run.  (Redrawing those few windows' own values
    would not do: a new run falls outside the range of 3 earlier ones half the time.)  s also
    holds the windows' sampling noise, so this errs wide."""
    values = np.array([stat(np.asarray(w, dtype=float)[None, :])[0] for w in windows],
                      dtype=np.float64)
    if np.any(values <= 0):
        return np.ones(resamples, dtype=np.float64)
    spread = float(np.std(np.log(values), ddof=1))
    # Clipped: with 2 windows T is Cauchy, whose far draws overflow exp (the percentiles kept
    # lie far inside the clip).
    factors: _Floats = np.exp(np.clip(spread * rng.standard_t(len(values) - 1, size=resamples),
                                      -50.0, 50.0))
    return factors


def _t_critical(df: float, confidence: float) -> float:
    table = _T_TABLE.get(round(confidence, 6))
    if table is None:
        raise ValueError(f"unsupported confidence {confidence!r}: use one of {sorted(_T_TABLE)}")
    return table[max(i for i, d in enumerate(_T_DF) if d <= max(df, 1.0))]


def windows_interval(baseline: Sequence[float], current: Sequence[float],
                     confidence: float = CONFIDENCE, *,
                     paired: bool = False) -> tuple[float, float] | None:
    """Welch t-interval of the ratio of geometric means current / baseline, from one value per
    window.  A side of one window against one of several gets the prediction interval of one
    more window instead (t with windows - 1 degrees of freedom, sd * sqrt(1 + 1/windows)).
    ``paired`` (as many windows a side, the i-th of each side by side): the t-interval of the
    mean log ratio of the pairs.  None when neither applies (one window each) or a value is
    <= 0."""
    _t_critical(1.0, confidence)  # validates the confidence first
    if len(baseline) + len(current) < 3 or min(*baseline, *current) <= 0.0:
        return None
    b, c = np.log(np.asarray(baseline, dtype=float)), np.log(np.asarray(current, dtype=float))
    if paired and b.size == c.size:
        d = c - b
        mean, half = float(np.mean(d)), 0.0
        if d.size >= 2:
            half = _t_critical(d.size - 1, confidence) * float(np.std(d, ddof=1)) / math.sqrt(
                d.size)
        return math.exp(mean - half), math.exp(mean + half)
    if b.size == 1 or c.size == 1:
        many, one, sign = (b, c, 1.0) if c.size == 1 else (c, b, -1.0)
        spread = float(np.std(many, ddof=1)) * math.sqrt(1.0 + 1.0 / many.size)
        diff = sign * float(one[0] - np.mean(many))
        half = _t_critical(many.size - 1, confidence) * spread
        return math.exp(diff - half), math.exp(diff + half)
    vb, vc = float(np.var(b, ddof=1)) / b.size, float(np.var(c, ddof=1)) / c.size
    diff = float(np.mean(c) - np.mean(b))
    if vb + vc == 0.0:
        return math.exp(diff), math.exp(diff)
    df = (vb + vc) ** 2 / (vb**2 / (b.size - 1) + vc**2 / (c.size - 1))
    half = _t_critical(math.floor(df), confidence) * math.sqrt(vb + vc)
    return math.exp(diff - half), math.exp(diff + half)


def change_verdict(low: float, high: float, tolerance: float, higher_is_better: bool) -> str:
    """Verdict from a ratio interval [low, high]: the worsening (ratio - 1, negated when higher
    is better) compared with the tolerance (a fraction, e.g. 0.05)."""
    if not (low <= high and tolerance >= 0.0):
        raise ValueError(f"need low <= high and tolerance >= 0, got {low}, {high}, {tolerance}")
    w_low, w_high = (1.0 - high, 1.0 - low) if higher_is_better else (low - 1.0, high - 1.0)
    if w_low > tolerance:
        return REGRESSED
    if w_high < -tolerance:
        return IMPROVED
    if (-tolerance <= w_low and w_high <= tolerance) or tolerance == 0.0:
        return NO_CHANGE  # (tolerance 0: the interval contains 0 here)
    return INCONCLUSIVE


def requests_to_settle(n: int, low: float, high: float, point: float,
                       tolerance: float) -> int | None:
    """About how many requests per run would settle an inconclusive verdict, if the interval's
    half-width shrinks as 1/sqrt(n); None when the change is about the tolerance itself."""
    if n < 1 or not low <= high or tolerance < 0.0:
        raise ValueError(f"need n >= 1, low <= high, tolerance >= 0 (got {n}, {low}, {high})")
    change = abs(point - 1.0)
    margin = change - tolerance if change > tolerance else tolerance - change
    if margin <= 1e-9:
        return None
    return math.ceil(n * ((high - low) / 2.0 / margin) ** 2)

"""Seeded simulation: does interleaving two builds keep a drifting machine from reading as a
regression?  (bench.ab; docs/baselines.md, "Two builds on one host").

Each simulated session measures side A and side B, ``ROUNDS`` windows each of ``REQUESTS``
requests, one after another on a machine whose time per token grows linearly by ``DRIFT``
(+30 %) from the session's first request to its last, with lognormal noise per request (sdlog
0.1) and, unless a test says otherwise, no difference at all between A and B.  The comparison
is bench.ab.compare_sides, the baseline gate's statistics, exactly as a run uses them.

- sequential (A A A A B B B B, what two sessions amount to): the drift reads as a regression;
- interleaved (A B, B A, A B, B A): a gate at tolerance 0, whose nominal rate of a false
  ``regressed`` is 2.5 % (one side of a 95 % interval), stays at or below it: the 99 % upper
  bound of the observed rate is under 2.5 % + 2 points;
- a real +15 % on B is caught (``regressed`` against a 5 % gate).

Run ``python -m tests.unit.test_ab_simulation`` for the table (more repetitions), or the tests
with ``-s`` to see their rates.
"""

from __future__ import annotations

import math
import random

from pytest_llmperf.bench.ab import Mode, compare_sides, schedule
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.statistics import REGRESSED, change_verdict
from pytest_llmperf.results.thresholds import parse_gate
from pytest_llmperf.results.window import WindowResult

MS = 1_000_000
ROUNDS = 4  # windows per side
REQUESTS = 16  # requests per window
TOKENS = 8
DRIFT = 0.30  # the machine's time per token grows this much over the session
NOMINAL = 0.025  # a false "regressed" at tolerance 0: one side of the 95 % interval
SLACK = 0.02
GATE = parse_gate("tpot_ms.mean:5%", "simulation")


def _window(rng: random.Random, tpot_ms: list[float]) -> WindowResult:
    """One window of a single user: a request per entry of ``tpot_ms`` (its mean token gap)."""
    records, now = [], 0
    for index, gap in enumerate(tpot_ms):
        step = gap * rng.lognormvariate(0.0, 0.1) * MS
        first = now + 20 * MS
        chunks = tuple(first + int(step * i) for i in range(TOKENS))
        records.append(RequestRecord(index, now, chunks, chunks[-1] + 1000, TOKENS,
                                     TokenSource.USAGE, 20, TokenSource.USAGE, "length"))
        now = chunks[-1] + 1000
    return WindowResult(ServedInfo("openai", "sim", "engine"), LoadShape.closed(1), TOKENS,
                        LoadRun(tuple(records), 0, now, 1, 0))


def session(seed: int, mode: Mode, *, drift: float = DRIFT, difference: float = 0.0
            ) -> tuple[tuple[int, ...], list[WindowResult]]:
    """The windows of one simulated session, in the order ``mode`` runs them."""
    rng = random.Random(seed)
    order = schedule(ROUNDS, mode)
    total = len(order) * REQUESTS
    windows = []
    for slot, side in enumerate(order):
        gaps = [10.0 * math.exp(math.log1p(drift) * (slot * REQUESTS + i) / total)
                * (1.0 + difference * side) for i in range(REQUESTS)]
        windows.append(_window(rng, gaps))
    return order, windows


def verdicts(seed: int, mode: Mode, **kwargs: float) -> tuple[str, str]:
    """B against A on TPOT mean: (verdict at tolerance 0, verdict of the 5 % gate)."""
    order, windows = session(seed, mode, **kwargs)
    (row,) = compare_sides(order, windows, mode=mode, gates=[GATE], seed=seed,
                           metrics=()).comparison.rows
    assert row.low is not None and row.high is not None
    return change_verdict(1 + row.low, 1 + row.high, 0.0, False), row.verdict


def rate(mode: Mode, repetitions: int, *, tolerance_zero: bool, first: int = 0,
         **kwargs: float) -> float:
    """Share of ``repetitions`` seeded sessions whose B reads ``regressed``."""
    hits = sum(verdicts(seed, mode, **kwargs)[0 if tolerance_zero else 1] == REGRESSED
               for seed in range(first, first + repetitions))
    return hits / repetitions


def upper_bound(hits: int, n: int, confidence: float = 0.99) -> float:
    """One-sided Clopper-Pearson upper bound of a binomial rate (bisection on the CDF)."""
    if hits >= n:
        return 1.0

    def cdf(p: float) -> float:
        return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(hits + 1))

    low, high = hits / n, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) > 1 - confidence else (low, middle)
    return high


def test_sequential_reads_the_drift_as_a_regression() -> None:
    gated = rate("sequential", 60, tolerance_zero=False)
    print(f"\nsequential, +30 % drift, no difference: 5 % gate regressed {gated:.3f}")
    assert gated > 0.7


def test_interleaved_keeps_the_false_positive_rate_at_its_nominal_level() -> None:
    repetitions = 400
    zero = rate("interleave", repetitions, tolerance_zero=True)
    bound = upper_bound(round(zero * repetitions), repetitions)
    print(f"\ninterleaved, +30 % drift, no difference: tolerance-0 regressed {zero:.4f} "
          f"(99 % upper bound {bound:.4f}; nominal {NOMINAL})")
    assert bound < NOMINAL + SLACK


def test_interleaved_finds_a_real_difference() -> None:
    power = rate("interleave", 60, tolerance_zero=False, first=10_000, difference=0.15)
    print(f"\ninterleaved, +30 % drift, B 15 % slower: 5 % gate regressed {power:.3f}")
    assert power > 0.8


def test_schedules_are_counterbalanced() -> None:
    """A linear drift favours neither side: the mean slot of A's windows is B's."""
    order = schedule(4, "interleave")
    assert order == (0, 1, 1, 0, 0, 1, 1, 0)
    slots = [[i for i, side in enumerate(order) if side == s] for s in (0, 1)]
    assert sum(slots[0]) == sum(slots[1])
    assert schedule(2, "bracket") == (0, 1, 0, 1, 0)
    assert schedule(2, "sequential") == (0, 0, 1, 1)


def main(repetitions: int = 1000) -> None:
    """The table of docs/baselines.md."""
    print(f"{repetitions} seeded sessions each, {ROUNDS} windows a side of {REQUESTS} requests, "
          f"TPOT +{DRIFT:.0%} drift over the session")
    print("| order | B vs A | regressed at tolerance 0 (nominal 0.025) | regressed, 5 % gate |")
    print("|---|---|---|---|")
    for mode in ("sequential", "interleave"):
        for difference in (0.0, 0.15):
            pairs = [verdicts(seed, mode, difference=difference)
                     for seed in range(repetitions)]
            zero = sum(p[0] == REGRESSED for p in pairs) / repetitions
            gated = sum(p[1] == REGRESSED for p in pairs) / repetitions
            print(f"| {mode} | {'same' if not difference else f'+{difference:.0%}'} | "
                  f"{zero:.3f} | {gated:.3f} |")


if __name__ == "__main__":
    main()

"""A window sized by its SLOs (results.sequential): the staged rule keeps the stated false-pass
rate under repeated looks (seeded simulation), a naive rule does not, a window far from its
limit stops at its first look and one near it measures longer."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.records import RequestRecord
from pytest_llmperf.results.sequential import (
    ALPHA,
    SequentialPlan,
    SequentialRule,
    WindowSizing,
    decide,
)
from pytest_llmperf.results.thresholds import Check, parse_check
from pytest_llmperf.results.window import WindowResult

if TYPE_CHECKING:
    from pytest_llmperf.bench.bench import Bench

REPS = 2000
SLACK = 0.01
P95_EXP = -math.log(0.05)  # the true p95 of Exp(1)


def check(text: str) -> Check:
    return parse_check(text, "thresholds.toml:1")


def declared_pass_rate(plan: SequentialPlan, slo: Check, limit_quantile: float,
                       seed: int) -> tuple[float, float]:
    """(share of REPS windows whose staged rule declared a pass, mean requests taken): each
    window Exp(1) values, the SLO's limit the distribution's ``limit_quantile``."""
    rng = np.random.default_rng(seed)
    passes, taken = 0, 0
    for _ in range(REPS):
        values = rng.exponential(size=plan.looks[-1]).tolist()
        for size, confidence in zip(plan.looks, plan.confidences, strict=True):
            decision = decide(slo, values[:size], confidence)
            if decision is not None:
                break
        taken += size
        passes += decision == "pass"
    assert -math.log(1.0 - limit_quantile) == pytest.approx(slo.limit, rel=1e-3)
    return passes / REPS, taken / REPS


def upper_bound(successes: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) upper bound of a binomial rate, by bisection."""
    def cdf(p: float) -> float:
        return sum(math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                            + k * math.log(p) + (n - k) * math.log1p(-p))
                   for k in range(successes + 1))

    low, high = successes / n, 1.0 - 1e-12
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) > 1.0 - confidence else (low, middle)
    return high


def test_the_plan_of_the_shipped_p95_slos() -> None:
    plan = SequentialPlan.for_checks([check("tpot_ms.p95 < 100"), check("ttft_ms.p95 < 1000"),
                                      check("decode_tokens_per_s.mean >= 10")])
    # The first look spends what a p95 pass at 64 requests needs (0.95**64 = 3.752 %, rounded
    # up), the two later looks the rest: 5 % in all.
    assert plan == SequentialPlan((64, 128, 256), (0.9624, 0.9938, 0.9938))
    assert sum(1 - c for c in plan.confidences) == pytest.approx(ALPHA)
    assert 0.95**64 <= 1 - plan.confidences[0] < 0.95**63
    # Means decide nothing: the first look at --llmperf-requests, an even split of 3 looks.
    assert SequentialPlan.for_checks([check("decode_tokens_per_s.mean >= 10")]) == (
        SequentialPlan((64, 128, 256), (1 - ALPHA / 3,) * 3))
    # A p98 cannot pass at 64 even at the first look's largest share: the first look waits.
    p98 = SequentialPlan.for_checks([check("tpot_ms.p98 < 1")])
    assert p98.looks[0] > 64 and 0.98 ** p98.looks[0] <= 1 - p98.confidences[0]
    assert SequentialPlan.for_checks([check("tpot_ms.p95 < 1")], spend=False) == (
        SequentialPlan((64, 128, 256), (0.95,) * 3))


@pytest.mark.parametrize(("name", "quantile"), [("at the limit", 0.95),
                                                ("just above it", 0.94)])
def test_the_staged_rule_keeps_the_false_pass_rate(name: str, quantile: float) -> None:
    # The true p95 sits at the limit (or above it: the SLO should fail); a pass is false.
    slo = check(f"tpot_ms.p95 < {-math.log(1.0 - quantile):.6f}")
    staged = SequentialPlan.for_checks([slo])
    rate, taken = declared_pass_rate(staged, slo, quantile, seed=1)
    bound = upper_bound(round(rate * REPS), REPS)
    print(f"\n{name}: staged rule {staged.looks} at {staged.confidences}: false passes "
          f"{rate:.4f} (95 % upper bound {bound:.4f}), {taken:.0f} requests on average")
    assert bound <= ALPHA + SLACK


def test_a_naive_rule_that_looks_at_full_alpha_exceeds_it() -> None:
    slo = check(f"tpot_ms.p95 < {P95_EXP:.6f}")
    naive = SequentialPlan.for_checks([slo], spend=False)
    rate, _ = declared_pass_rate(naive, slo, 0.95, seed=1)
    staged_rate, _ = declared_pass_rate(SequentialPlan.for_checks([slo]), slo, 0.95, seed=1)
    print(f"\nnaive rule {naive.looks} at {naive.confidences}: false passes {rate:.4f}; "
          f"staged: {staged_rate:.4f}")
    assert rate > ALPHA  # each look alone keeps 5 %, three looks together do not
    assert staged_rate < rate


def ttft_records(values_ms: list[float]) -> list[RequestRecord]:
    records = []
    for i, ms in enumerate(values_ms):
        send = i * 10**9
        first = send + int(ms * 1e6)
        records.append(RequestRecord(request_id=i, send_ns=send, chunk_ns=(first, first + 10**6),
                                     end_ns=first + 10**6, output_tokens=2))
    return records


def run_rule(slo: Check, values_ms: list[float]) -> tuple[SequentialRule, int]:
    """Feeds the rule one record at a time, as a window does; (rule, requests it took)."""
    rule = SequentialRule(SequentialPlan.for_checks([slo]), (slo,))
    records = ttft_records(values_ms)
    for count in range(1, len(records) + 1):
        if rule(records[:count]):
            return rule, count
    return rule, len(records)


def test_a_window_far_from_its_limit_stops_at_the_first_look() -> None:
    rng = np.random.default_rng(7)
    slo = check("ttft_ms.p95 < 1000")
    rule, taken = run_rule(slo, (rng.exponential(size=256) * 20.0).tolist())  # p95 ~ 60 ms
    sizing = rule.sizing(ttft_records([0.0] * taken))
    assert (taken, rule.look, rule.undecided) == (64, 1, ())
    assert sizing.describe(64) == ("stopped at 64 requests: every SLO decided (look 1 of 3, "
                                   "96.24 % confidence)")
    # ... and one clearly failing it stops there too (decided: fail).
    rule, taken = run_rule(slo, (rng.exponential(size=256) * 2000.0).tolist())
    assert (taken, rule.undecided) == (64, ())


def test_a_window_near_its_limit_measures_longer() -> None:
    rng = np.random.default_rng(3)
    taken = []
    for _ in range(40):
        # True p95 1.25x under the limit: a few values cross it, the first look rarely decides.
        values = (rng.exponential(size=256) * 1000.0 / P95_EXP / 1.25).tolist()
        taken.append(run_rule(check("ttft_ms.p95 < 1000"), values)[1])
    assert np.mean(taken) > 64
    assert max(taken) == 256


def test_the_cap_says_what_is_still_undecided() -> None:
    sizing = WindowSizing((64, 128, 256), 0.9938, 3, ("tpot_ms.p95",))
    assert sizing.describe(256) == ("reached the cap of 256 requests: tpot_ms.p95 still "
                                    "undecided (look 3 of 3, 99.38 % confidence)")
    assert WindowSizing.from_json(Fields(sizing.to_json())) == sizing


# --- the bench: a window no one sized takes what its SLOs need -------------------------------


def fake_bench(tmp_path: Path, cli: dict[str, str | None],
               ttft_ms: float | None = None) -> tuple[Bench, list[int]]:
    """A bench whose windows answer every request in ``ttft_ms`` (None: every 25th in 2 s,
    the others in 20 ms) and call the stop rule after
    each, as load.closed_loop does; the list gets each window's planned requests."""
    from pytest_llmperf.bench.serve import open_bench
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.results.records import LoadRun
    from pytest_llmperf.settings.resolve import resolve_settings

    planned: list[int] = []

    def answers(served: Any, prompts: Any, *, shape: Any, requests: int | None,
                stop: Any = None, **_: Any) -> WindowResult:
        assert requests is not None
        planned.append(requests)
        records: list[RequestRecord] = []
        reason = None
        values = [ttft_ms if ttft_ms is not None else 2000.0 if i % 25 == 24 else 20.0
                  for i in range(requests)]
        for record in ttft_records(values):
            records.append(record)
            reason = stop(records) if stop is not None else None
            if reason:
                break
        run = LoadRun(tuple(records), 0, records[-1].end_ns, 1, 0, reason)
        return WindowResult(served.info, shape, 2, run)

    settings = resolve_settings(cli, {}, {}, tmp_path)
    served = ServedModel("llamacpp", "smollm2-135m", None, engine="xllamacpp 1")
    bench = open_bench(served, None, None, settings)  # type: ignore[arg-type]
    return dataclasses.replace(bench, runner=answers), planned


SLOS = (check("ttft_ms.p95 < 1000"), check("decode_tokens_per_s.mean >= 10"))


def test_a_window_no_one_sized_stops_once_its_slos_are_decided(tmp_path: Path) -> None:
    bench, planned = fake_bench(tmp_path, {}, ttft_ms=20.0)
    window = bench.window(users=1, checks=SLOS)
    assert (planned, window.requests) == ([256], 64)
    assert window.sizing is not None
    assert window.sizing.describe(window.requests) == (
        "stopped at 64 requests: every SLO decided (look 1 of 3, 96.24 % confidence)")
    assert window.run.stopped_early == "every SLO decided at 64 requests (look 1 of 3)"
    # Judged at the looks' confidence; the JSON keeps the sizing.
    assert [v.state for v in bench.judge(window, SLOS)] == ["pass", "pass"]
    assert WindowResult.from_json(Fields(window.to_json())).sizing == window.sizing


def test_a_clear_miss_stops_early_and_a_close_call_reaches_the_cap(tmp_path: Path) -> None:
    bench, _ = fake_bench(tmp_path, {}, ttft_ms=1000.0)  # every TTFT at the limit
    window = bench.window(users=1, checks=SLOS)
    assert window.requests == 64  # decided: it fails
    assert [v.state for v in bench.judge(window, SLOS)] == ["fail", "pass"]
    bench, _ = fake_bench(tmp_path, {})  # 4 % of TTFTs beyond the limit: p95 undecided
    window = bench.window(users=1, checks=SLOS)
    assert window.sizing is not None
    assert (window.requests, window.run.stopped_early) == (256, None)
    assert window.sizing.describe(window.requests) == (
        "reached the cap of 256 requests: ttft_ms.p95 still undecided (look 3 of 3, 99.38 % "
        "confidence)")
    assert [v.state for v in bench.judge(window, SLOS)] == ["inconclusive", "pass"]


@pytest.mark.parametrize(("cli", "call", "size"), [
    ({"requests": "16"}, {}, 16),  # --llmperf-requests fixes every window
    ({}, {"requests": 8}, 8),  # so does the call's own count
    ({"duration": "5"}, {}, None),
])
def test_a_size_someone_gave_fixes_the_window(tmp_path: Path, cli: dict[str, str | None],
                                              call: dict[str, int], size: int | None) -> None:
    bench, planned = fake_bench(tmp_path, cli, ttft_ms=20.0)
    if size is None:
        assert not bench.load.sized_by_slo
        return
    window = bench.window(users=1, checks=SLOS, **call)
    assert (planned, window.requests, window.sizing) == ([size], size, None)

"""Settling a capacity: the capacity load's probes are pooled and measured again until its
percentile SLOs are decided; a load that sits at its limit (it passes one dozen requests and
fails the next) is named undecided, so the search finds the same capacity run after run."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence

from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.judge import judge_window
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.thresholds import Check, parse_check
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.searches.capacity import search_capacity
from pytest_llmperf.searches.capacity_probe import probe_outcome
from pytest_llmperf.searches.capacity_settle import (
    PooledSettler,
    cannot_pass,
    pooled_window,
    settling_stop,
)
from pytest_llmperf.searches.probe_rules import clearly_failed

MS = 1_000_000
CHECKS = (parse_check("ttft_ms.p95 < 1000", "test"),)
PROBE_REQUESTS = 12


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(i: int, ttft_ms: float) -> RequestRecord:
    send = i * 2000 * MS
    first = send + int(ttft_ms * MS)
    chunks = tuple(first + k * 20 * MS for k in range(8))
    return RequestRecord(i, send, chunks, chunks[-1], 8, TokenSource.USAGE)


class Server:
    """A server whose TTFT at a load is drawn from ``ttft(load, rng)``; each request costs the
    fake clock 1 s.  ``probe`` and ``pooled`` do what Bench._probe does with real windows."""

    def __init__(self, ttft: Callable[[float, random.Random], float], seed: int,
                 clock: Clock) -> None:
        self.ttft, self.rng, self.clock = ttft, random.Random(seed), clock
        self.sizes: list[tuple[float, int, int]] = []  # (load, measured, pooled with)

    def window(self, load: float, planned: int,
               stop: Callable[[Sequence[RequestRecord]], str | None]) -> WindowResult:
        done: list[RequestRecord] = []
        stopped = None
        while len(done) < planned and stopped is None:
            done.append(record(len(done), self.ttft(load, self.rng)))
            self.clock.now += 1.0
            stopped = stop(done)
        run = LoadRun(tuple(done), 0, done[-1].end_ns, int(load), 0, stopped)
        return WindowResult(ServedInfo("llamacpp", "m", "e"), LoadShape.closed(int(load)), 8,
                            run)

    def probe(self, load: float) -> ProbeOutcome:
        began = self.clock.now
        window = self.window(load, PROBE_REQUESTS,
                             lambda done: clearly_failed(CHECKS, done, PROBE_REQUESTS))
        self.sizes.append((load, window.requests, 0))
        return probe_outcome(load, window, judge_window(window, CHECKS), CHECKS,
                             self.clock.now - began)

    def pooled(self, load: float, more: int, earlier: Sequence[RequestRecord],
               earlier_s: float) -> ProbeOutcome:
        began = self.clock.now
        window = self.window(load, more,
                             settling_stop(CHECKS, earlier, len(earlier) + more))
        self.sizes.append((load, window.requests, len(earlier)))
        judged = judge_window(pooled_window(window, earlier, earlier_s), CHECKS)
        return probe_outcome(load, window, judged, CHECKS, self.clock.now - began,
                             pooled=len(earlier))


def at_the_limit(load: float, rng: random.Random) -> float:
    """1-2 users far below 1000 ms; 3 users below it but for 8 % of requests (its true p95
    beyond the limit by a hair); 4 users far beyond."""
    if load <= 2:
        return 300.0 * load + rng.uniform(0, 100)
    if load == 3:
        return 1100.0 if rng.random() < 0.08 else 900.0 + rng.uniform(0, 50)
    return 1400.0 + rng.uniform(0, 100)


def search(server: Server, clock: Clock, settle: bool, budget_s: float = 10_000
           ) -> CapacityResult:
    return search_capacity(server.probe, dimension="users", start=1, maximum=64,
                           budget_s=budget_s, clock=clock,
                           settler=PooledSettler(CHECKS, server.pooled) if settle else None)


def test_a_load_at_its_limit_is_undecided_and_the_capacity_is_the_same_every_run() -> None:
    found, unsettled = [], []
    for seed in range(20):
        clock = Clock()
        found.append(search(Server(at_the_limit, seed, clock), clock, settle=True).capacity)
        clock = Clock()
        unsettled.append(search(Server(at_the_limit, seed, clock), clock,
                                settle=False).capacity)
    assert found == [2.0] * 20
    # Without settling, twelve requests at 3 users miss the 8 % often enough to flip it.
    assert {2.0, 3.0} <= set(unsettled)


def test_the_capacity_is_decided_on_the_first_look_and_says_so() -> None:
    clock = Clock()
    server = Server(at_the_limit, 2, clock)  # seed 2: 3 users pass their dozen
    result = search(server, clock, settle=True)
    assert result.capacity == 2 and result.decided is True
    assert result.settled == "every SLO decided on 63 requests of 2 probes (96 % confidence)"
    # 3 users held its dozen; pooled, a late request made a pass impossible after 25 more.
    assert server.sizes[-2:] == [(3.0, 25, 12), (2, 51, 12)]  # then 2 users: 12 + 51 = 63
    three = [p for p in result.probes if p.load == 3]
    assert [p.passed for p in three] == [True, False] and three[-1].pooled == 12
    assert "cannot be decided passing at 63 requests" in (three[-1].undecided or "")
    assert result.summary == (
        "max 2 users: 2 users passed 2 of 2, 3 users undecided (held on 37 requests, not shown "
        "to hold); 2 users: every SLO decided on 63 requests of 2 probes (96 % confidence)")


def test_a_pooled_probe_that_cannot_pass_its_look_stops_within_a_few_requests() -> None:
    clock = Clock()
    # 3 users always pass their dozen, then one request in 6 is late.
    draws = iter([900.0] * 12 + [900.0, 900.0, 900.0, 900.0, 900.0, 1100.0] * 20)
    server = Server(lambda load, rng: (next(draws) if load == 3
                                       else at_the_limit(load, rng)), 1, clock)
    result = search(server, clock, settle=True)
    settling_three = [m for load, m, pooled in server.sizes if load == 3 and pooled]
    assert settling_three == [6]  # stopped at its first late request, not after 51
    assert result.capacity == 2
    undecided = next(p for p in result.probes if p.undecided)
    assert not undecided.passed and undecided.broke == ()
    assert undecided.undecided == ("ttft_ms.p95 cannot be decided passing at 63 requests "
                                   "(96 % confidence): 1 of 18 already miss ttft_ms.p95 < "
                                   "1000: it sits at its limit")


def test_a_load_never_probed_below_an_undecided_one_is_measured_before_settling() -> None:
    """Doubling jumped from 2 users to 4; 4 held its dozen on its point estimate (p95 981 ms)
    with one request at 1020 ms, so it cannot be shown to hold.  The capacity is then not 2
    by default: 3 users, never measured, is probed and settled."""
    def ttft(load: float, rng: random.Random) -> float:
        if load <= 3:
            return 280.0 * load + rng.uniform(0, 50)
        if load == 4:
            return 1020.0 if rng.random() < 1 / 12 else 950.0
        return 1400.0

    clock = Clock()
    server = Server(ttft, 0, clock)
    # Seed 0's first dozen at 4 users has exactly one late request (checked below).
    result = search(server, clock, settle=True)
    four = [p for p in result.probes if p.load == 4]
    assert four[0].passed is False and "1 of 12 already miss" in (four[0].undecided or "")
    assert [load for load, _, pooled in server.sizes if not pooled] == [1, 2, 4, 8, 6, 5, 5, 3]
    assert result.capacity == 3 and result.decided is True
    assert result.settled == "every SLO decided on 63 requests of 2 probes (96 % confidence)"


def test_a_budget_too_small_to_settle_says_the_capacity_is_not_decided() -> None:
    clock = Clock()
    server = Server(lambda load, rng: 300.0 if load <= 2 else 1500.0, 3, clock)
    result = search(server, clock, settle=True, budget_s=60)
    assert result.capacity == 2 and result.decided is False
    assert result.stop_reason == "boundary found"
    assert result.settled == ("ttft_ms.p95 not decided: 12 requests of 1 probe, a decision "
                              "needs 63; the budget (60 s) ran out first")
    assert result.summary.endswith("; 2 users: " + result.settled)


def test_settling_is_kept_with_the_search() -> None:
    clock = Clock()
    result = search(Server(at_the_limit, 2, clock), clock, settle=True)
    stored = CapacityResult.from_json(Fields(json.loads(json.dumps(result.to_json())), "s"))
    assert (stored.settled, stored.decided) == (result.settled, result.decided)
    assert [(p.pooled, p.undecided) for p in stored.probes] == \
        [(p.pooled, p.undecided) for p in result.probes]
    assert stored.summary == result.summary


def test_cannot_pass_pads_the_rest_with_the_best_values() -> None:
    fast = [record(i, 500.0) for i in range(12)]
    checks: tuple[Check, ...] = (*CHECKS, parse_check("decode_tokens_per_s.mean >= 10", "t"))
    assert cannot_pass(checks, fast, 63, 0.96) is None
    late = [*fast, record(12, 1200.0)]
    assert cannot_pass(checks, late, 63, 0.96) == (
        "ttft_ms.p95 cannot be decided passing at 63 requests (96 % confidence): 1 of 13 "
        "already miss ttft_ms.p95 < 1000")
    # A later look (126 at 99.67 %) may still bound a p95 past one late request.
    assert cannot_pass(checks, late, 200, 0.95) is None


def test_a_median_is_settled_at_the_later_looks_a_dozen_cannot_decide() -> None:
    median = (parse_check("ttft_ms.median < 1000", "test"),)
    settler = PooledSettler(median, lambda *_: ProbeOutcome(3, True))
    first = [record(i, 1100.0 if i < 3 else 900.0) for i in range(12)]
    window = WindowResult(ServedInfo("llamacpp", "m", "e"), LoadShape.closed(3), 8,
                          LoadRun(tuple(first), 0, first[-1].end_ns, 3, 0))
    probe = ProbeOutcome(3, True, window=window, duration_s=12.0)
    # Looks at 5 and 10 could not bound the median below 1000 ms past 3 late requests; the
    # look at 20 can, if the 8 requests to come are on time.
    state = settler.state([probe])
    assert (state.more, state.decided) == (8, False)
    assert state.text == ("ttft_ms.median not decided: 12 requests of 1 probe, a decision "
                          "needs 20")
    assert settler.seconds(8, [probe]) == 8.0

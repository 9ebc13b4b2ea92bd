"""The capacity search against probes with a known boundary: it finds it, confirms it, says
how sure it is, keeps to its budget, and is honest when cut short."""

from __future__ import annotations

import pytest

from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.searches.capacity import search_capacity


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def boundary_probe(capacity: float, clock: Clock, seconds: float = 10.0,
                   flaky: dict[float, list[bool]] | None = None):
    """Passes up to ``capacity``; each probe takes ``seconds`` of the fake clock.  ``flaky``
    gives the outcomes, in turn, of loads that are not decided by the boundary."""
    loads: list[float] = []

    def probe(load: float) -> ProbeOutcome:
        loads.append(load)
        clock.now += seconds
        passed = load <= capacity
        if flaky and load in flaky and flaky[load]:
            passed = flaky[load].pop(0)
        share = load / capacity
        return ProbeOutcome(load, passed, () if passed else ("tpot_ms.p95 = 120 ms",),
                            headroom=share, goodput=load, duration_s=seconds)

    return probe, loads


def search(probe, clock: Clock, **kwargs) -> CapacityResult:
    options = {"dimension": "users", "start": 1, "maximum": 1024, "budget_s": 10_000}
    return search_capacity(probe, clock=clock, **{**options, **kwargs})


def test_finds_a_user_boundary_by_doubling_then_bisecting_then_confirming() -> None:
    clock = Clock()
    probe, loads = boundary_probe(9, clock)
    result = search(probe, clock)
    assert loads == [1, 2, 4, 8, 16, 12, 10, 9, 9, 10]
    assert (result.capacity, result.first_failing) == (9, 10)
    assert result.stop_reason == "boundary found"
    assert result.summary == "max 9 users: 9 users passed 2 of 2, 10 users failed 2 of 2"
    assert result.broke_first == ("tpot_ms.p95 = 120 ms",)
    assert result.goodput == 9
    assert result.boundary == "gradual"  # at 9 users it used 100 % of its limit


def test_a_boundary_that_passes_once_and_fails_once_lowers_the_capacity() -> None:
    clock = Clock()
    # 9 users pass while bisecting, then fail the confirming probe.
    probe, loads = boundary_probe(9, clock, flaky={9: [True, False]})
    result = search(probe, clock)
    assert result.capacity == 8  # every probe at 8 and below passed
    assert result.first_failing == 9
    # 8 users, the new capacity, had passed once: it is probed again, not left on one probe.
    assert loads[-4:] == [9, 9, 10, 8]
    assert result.summary == ("max 8 users: 8 users passed 2 of 2, 9 users failed 1 of 2; "
                              "passed and failed at 9 users")


def test_a_rate_boundary_is_narrowed_to_the_resolution() -> None:
    clock = Clock()
    probe, loads = boundary_probe(3.3, clock)
    result = search(probe, clock, dimension="rate", start=0.5, maximum=100)
    assert result.capacity is not None and result.first_failing is not None
    assert result.capacity <= 3.3 < result.first_failing
    assert result.first_failing / result.capacity <= 1.1
    assert loads[:4] == [0.5, 1, 2, 4]
    assert result.load_text(2.0) == "2 req/s"


def test_the_budget_stops_the_search_before_a_probe_would_overrun_it() -> None:
    clock = Clock()
    probe, loads = boundary_probe(9, clock, seconds=10)
    result = search(probe, clock, budget_s=35)
    # Three probes of 10 s fit; a fourth would end at 40 s > 35 s.
    assert loads == [1, 2, 4]
    assert result.elapsed_s == 30 <= result.budget_s
    assert result.stop_reason == "budget"
    assert result.capacity == 4 and result.first_failing is None
    assert result.summary.endswith("the budget (35 s) ran out first: the capacity may be "
                                   "higher; rests on one probe at 4 users")


def test_an_open_loop_budget_expects_shorter_probes_at_higher_rates() -> None:
    clock = Clock()
    seconds = iter([16.0, 8.0, 4.0, 2.0, 1.0, 1.0, 1.0, 1.0])

    def probe(load: float) -> ProbeOutcome:
        duration = next(seconds)
        clock.now += duration
        return ProbeOutcome(load, True, duration_s=duration)

    result = search(probe, clock, dimension="rate", start=1, maximum=16, budget_s=31)
    # 16 + 8 + 4 + 2 = 30 s: the estimate for 16 req/s is 16 s x 1/16 = 1 s, and it fits.
    assert [p.load for p in result.probes] == [1, 2, 4, 8, 16]
    assert result.stop_reason == "maximum load"
    assert "every SLO held up to the maximum load searched" in result.summary


def test_a_failing_start_halves_down_and_the_lowest_failing_says_no_capacity() -> None:
    clock = Clock()
    probe, loads = boundary_probe(3, clock)
    result = search(probe, clock, start=16)
    assert loads[:3] == [16, 8, 4]
    assert result.capacity == 3
    probe, loads = boundary_probe(0.5, Clock())
    none = search(probe, Clock(), start=4)
    assert loads == [4, 2, 1]
    assert none.capacity is None and none.stop_reason == "minimum load failed"
    assert none.summary == ("no capacity found: no load probed held every SLO, down to 1 user, "
                            "1 user failed 1 of 1 (the lowest load searched); rests on one "
                            "probe at 1 user")


@pytest.mark.parametrize(("share", "expected"), [(0.5, "cliff"), (0.95, "gradual")])
def test_cliff_or_gradual_by_how_close_the_capacity_load_came(share: float,
                                                              expected: str) -> None:
    probes = (ProbeOutcome(8, True, headroom=share), ProbeOutcome(9, False, headroom=3.0))
    result = CapacityResult("users", 8, 9, probes, "boundary found", 1.0, 60.0)
    assert result.boundary == expected


def test_a_load_the_client_could_not_offer_ends_the_search_without_blaming_the_server() -> None:
    """Out of file descriptors at 8 users: that probe measured the client, not the server, so
    the search stops there, keeps 4 users as what it knows, and says the capacity may be
    higher (it neither fails 8 users nor bisects down from them)."""
    clock = Clock()
    server, loads = boundary_probe(100, clock)

    def probe(load: float) -> ProbeOutcome:
        outcome = server(load)
        if load < 8:
            return outcome
        return ProbeOutcome(load, False, ("client_limit: 3 of 16 requests ...",),
                            duration_s=10.0,
                            client_limit="3 of 16 requests could not be sent, the client's "
                                         "machine ran out: [Errno 24] Too many open files")

    result = search(probe, clock)
    assert loads == [1, 2, 4, 8]
    assert result.stop_reason == "client limit"
    assert (result.capacity, result.first_failing) == (4, None)
    assert result.summary == ("max 4 users: 4 users passed 1 of 1; the client could not offer "
                              "8 users (3 of 16 requests could not be sent, the client's machine "
                              "ran out: [Errno 24] Too many open files): the capacity may be "
                              "higher; rests on one probe at 4 users")
    stored = CapacityResult.from_json(Fields(result.to_json()))
    assert stored.probes[-1].client_limit == result.probes[-1].client_limit
    assert stored.summary == result.summary


def test_a_probe_with_requests_the_client_could_not_send_is_a_probe_of_the_client() -> None:
    from pytest_llmperf import LoadRun, LoadShape, RequestRecord, TokenSource, WindowResult
    from pytest_llmperf.results.served import ServedInfo
    from pytest_llmperf.searches.capacity_probe import probe_outcome

    good = [RequestRecord(i, 0, (10_000_000, 20_000_000), 20_000_000, 2, TokenSource.USAGE)
            for i in range(13)]
    refused = [RequestRecord(13 + i, 0, end_ns=1, error="[Errno 24] Too many open files",
                             error_kind="client_limit") for i in range(3)]
    window = WindowResult(ServedInfo("llamacpp", "m", "e"), LoadShape.closed(8), 2,
                          LoadRun((*good, *refused), 0, 20_000_000, 8, 0))
    outcome = probe_outcome(8, window, (), (), 1.0)
    assert not outcome.passed
    assert outcome.client_limit == ("3 of 16 requests could not be sent, the client's machine "
                                    "ran out: [Errno 24] Too many open files")
    assert outcome.broke[0].startswith("client_limit: 3 of 16")
    clean = WindowResult(window.served, window.shape, 2, LoadRun(tuple(good), 0, 20_000_000, 8, 0))
    assert probe_outcome(8, clean, (), (), 1.0).client_limit is None

"""A capacity against the baseline's: only confirmed probes make a change sure."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.thresholds import parse_gate
from pytest_llmperf.store.capacity_compare import compare_capacity


def entry(capacity: float | None, first_failing: float | None,
          probes: list[tuple[float, bool]]) -> CapacityResult:
    """A search over users (its metric capacity_max_concurrency, in users)."""
    result = CapacityResult("users", capacity, first_failing,
                            tuple(ProbeOutcome(load, passed) for load, passed in probes),
                            "boundary found", 60.0, 600.0)
    assert (result.metric, result.unit) == ("capacity_max_concurrency", "users")
    return result


BASE = entry(6, 7, [(1, True), (2, True), (4, True), (8, False), (6, True), (7, False),
                    (6, True), (7, False)])


def test_a_load_the_baseline_held_failing_twice_is_a_regression() -> None:
    now = entry(4, 5, [(1, True), (2, True), (4, True), (8, False), (6, False), (5, False),
                       (4, True), (5, False)])
    change = compare_capacity([BASE], now)
    assert change.verdict == "regressed"
    assert change.change == pytest.approx(-1 / 3)
    assert change.describe() == ("6 -> 4 users (-33.3 %): regressed: 5 users failed 2 of 2; "
                                 "the baseline held 6")


def test_a_boundary_probed_once_is_inconclusive() -> None:
    now = entry(4, 5, [(1, True), (2, True), (4, True), (8, False), (5, False)])
    assert compare_capacity([BASE], now).verdict == "inconclusive"


def test_the_same_capacity_and_a_confirmed_improvement() -> None:
    assert compare_capacity([BASE], BASE).verdict == "no significant change"
    better = entry(9, 10, [(8, True), (16, False), (9, True), (10, False), (9, True),
                           (10, False)])
    change = compare_capacity([BASE], better)
    assert change.verdict == "improved"
    assert change.note == "9 users passed 2 of 2; the baseline failed at 7"


def test_several_baseline_runs_are_held_by_their_lowest_capacity() -> None:
    other = dataclasses.replace(BASE, capacity=5, first_failing=6)
    now = entry(5, 6, [(5, True), (6, False), (5, True), (6, False)])
    assert compare_capacity([BASE, other], now).verdict == "no significant change"


def test_a_gate_fails_only_a_confirmed_regression_beyond_its_tolerance() -> None:
    now = entry(4, 5, [(4, True), (5, False), (4, True), (5, False)])
    loose = parse_gate("capacity_max_concurrency:50%", "--llmperf-compare-fail")
    tight = parse_gate("capacity_max_concurrency regresses < 10%", "thresholds.toml:3")
    assert not compare_capacity([BASE], now, loose).failed  # 4 >= 6 x 0.5
    failing = compare_capacity([BASE], now, tight)
    assert failing.failed
    assert failing.describe().endswith("[gate capacity_max_concurrency regresses < 10%: FAILED]")
    once = entry(4, 5, [(4, True), (5, False)])
    assert not compare_capacity([BASE], once, tight).failed  # not confirmed: never fails


def test_a_load_left_undecided_between_the_two_capacities_is_no_regression() -> None:
    base = entry(3, 4, [(1, True), (2, True), (4, False), (3, True), (4, False), (3, True)])
    undecided = ProbeOutcome(3, False, undecided="ttft_ms.p95 not decided: it sits at its limit")
    now = dataclasses.replace(
        entry(2, 3, [(1, True), (2, True), (4, False), (3, True), (4, False), (2, True)]),
        probes=(*entry(2, 3, [(1, True), (2, True), (4, False), (3, True), (4, False),
                              (2, True)]).probes, undecided))
    change = compare_capacity([base], now)
    assert change.verdict == "inconclusive"
    assert change.note.startswith("3 users was undecided here: it held on its point estimates")
    # The same grey zone read the other way round: the baseline left 3 users undecided.
    assert compare_capacity([now], base).note.startswith("3 users was undecided in the baseline")
    # Without an undecided load, a lower capacity on single probes says so.
    plain = entry(2, 3, [(2, True), (3, False)])
    assert compare_capacity([base], plain).note == (
        "the boundary here or in the baseline rests on single probes")

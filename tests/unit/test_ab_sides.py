"""bench.ab without a server: the orders, which sides are open when, bracketing's drift
verdict, and the paired statistics it uses."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any, cast

import pytest

from pytest_llmperf.bench import Bench
from pytest_llmperf.bench.ab import ABSide, compare_sides, run_ab, schedule
from pytest_llmperf.results.statistics import (
    INCONCLUSIVE,
    REGRESSED,
    ratio_interval,
    windows_interval,
)
from pytest_llmperf.results.thresholds import parse_gate
from pytest_llmperf.results.window import WindowResult
from tests.unit.test_ab_simulation import _window

GATE = parse_gate("tpot_ms.mean:5%", "test")


def windows(*tpots: float) -> list[WindowResult]:
    import random

    rng = random.Random(len(tpots))
    return [_window(rng, [tpot] * 24) for tpot in tpots]


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 round"):
        schedule(0, "interleave")
    with pytest.raises(ValueError, match="unknown A/B mode 'zigzag'"):
        schedule(2, "zigzag")  # type: ignore[arg-type]


def test_bracketing_says_the_machine_drifted_instead_of_a_regression() -> None:
    # A B A on a machine that slows down: B sits in the middle, A's blocks 10 and 14 ms.
    order, measured = (0, 1, 0), windows(10.0, 13.0, 14.0)
    result = compare_sides(order, measured, ("before", "after"), mode="bracket", gates=[GATE],
                           metrics=())
    assert result.drift is not None and result.drift.drifted
    assert 0.25 < result.drift.change < 0.5
    (row,) = result.comparison.rows
    assert row.verdict == INCONCLUSIVE and not result.failed
    assert row.note is not None
    assert re.search(r"the machine drifted by \+\d+\.\d % between the first and last before "
                     r"blocks \(tpot_ms.mean\): the comparison is inconclusive", row.note)
    assert "the machine drifted" in result.describe()
    # A steady machine: the same B is a regression the gate names.
    steady = compare_sides((0, 1, 0, 1, 0), windows(10.0, 13.0, 10.0, 13.0, 10.0),
                           mode="bracket", gates=[GATE], metrics=())
    assert steady.drift is not None and not steady.drift.drifted
    assert [row.verdict for row in steady.failed] == [REGRESSED]


def test_sides_open_as_the_mode_says() -> None:
    events: list[str] = []

    class FakeBench:
        def __init__(self, name: str) -> None:
            self.name = name

        def window(self) -> WindowResult:
            events.append(f"measure {self.name}")
            return windows(12.0 if self.name == "after" else 10.0)[0]

    def side(name: str) -> ABSide:
        @contextlib.contextmanager
        def opened() -> Iterator[Bench]:
            events.append(f"open {name}")
            yield cast(Bench, FakeBench(name))
            events.append(f"close {name}")

        return ABSide(name, opened)

    def measure(bench: Any) -> WindowResult:
        return cast(WindowResult, bench.window())

    told: list[int] = []
    result = run_ab(side("before"), side("after"), measure, rounds=2, mode="interleave",
                    gates=[GATE], on_window=lambda s, w: told.append(s))
    assert events == ["open before", "open after", "measure before", "measure after",
                      "measure after", "measure before", "close after", "close before"]
    assert told == [0, 1, 1, 0] and result.order == (0, 1, 1, 0)
    assert len(result.side(0)) == len(result.side(1)) == 2
    events.clear()
    run_ab(side("before"), side("after"), measure, rounds=1, mode="bracket")
    assert events == ["open before", "measure before", "close before", "open after",
                      "measure after", "close after", "open before", "measure before",
                      "close before"]


def test_paired_intervals_cancel_what_a_pair_shares() -> None:
    # Window means drift 10 -> 16; B is 2 % above A in every pair.
    a = [10.0, 12.0, 14.0, 16.0]
    b = [x * 1.02 for x in a]
    low, high = windows_interval(a, b, paired=True)  # type: ignore[misc]
    assert low == pytest.approx(1.02) and high == pytest.approx(1.02)
    unpaired = windows_interval(a, b)
    assert unpaired is not None and unpaired[0] < 0.9 < 1.1 < unpaired[1]
    sides_a = [[x] * 16 for x in a]
    sides_b = [[x] * 16 for x in b]
    low, high = ratio_interval(sides_a, sides_b, "mean", paired=True)
    assert low == pytest.approx(1.02) and high == pytest.approx(1.02)
    with pytest.raises(ValueError, match="as many on each side"):
        ratio_interval(sides_a, sides_b[:3], "mean", paired=True)

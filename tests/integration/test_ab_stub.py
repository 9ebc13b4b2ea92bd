"""Two builds on one host, for real over HTTP: bench.ab's runner against pairs of
measuring-instrument stubs (tests/fakes/sse_stub.py) with known token gaps, attached as any
OpenAI-compatible server is.

- an identical pair reads "no significant change"; B 20 % slower per token reads "regressed";
- a drifting machine (both stubs' token gaps grow by the same ms per second of one shared clock,
  about +100 % over a comparison) fails the sequential A-then-B comparison, while the interleaved
  one holds, and bracketing (A B A) says the machine drifted instead of calling a regression.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmperf.bench import Bench, serve
from pytest_llmperf.bench.ab import ABResult, ABSide, Mode, run_ab
from pytest_llmperf.results.statistics import INCONCLUSIVE, NO_CHANGE, REGRESSED
from pytest_llmperf.results.thresholds import parse_gate
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.settings import settings_from
from tests.fakes.stub_process import running_stub

pytestmark = pytest.mark.slow

GATE = parse_gate("tpot_ms.mean:5%", "test")
ROUNDS = 4


def side(name: str, url: str, tmp: Path) -> ABSide:
    settings = settings_from(tmp, backend="openai", model="stub", base_url=url, requests=12,
                             warmup=1, max_tokens=12, telemetry_interval=5)

    def opened() -> contextlib.AbstractContextManager[Bench]:
        return serve(settings, progress=None)

    return ABSide(name, opened)


def two_users(bench: Bench) -> WindowResult:
    return bench.window(users=2)


@contextlib.contextmanager
def stubs(a_ms: float, b_ms: float, *extra: str) -> Iterator[tuple[str, str]]:
    with running_stub("--token-ms", str(a_ms), "--first-ms", "5", "--jitter", "0.05",
                      *extra) as a, \
            running_stub("--token-ms", str(b_ms), "--first-ms", "5", "--jitter", "0.05",
                         *extra) as b:
        yield a, b


def compare(a: str, b: str, tmp: Path, mode: Mode, rounds: int = ROUNDS) -> ABResult:
    result = run_ab(side("before", a, tmp), side("after", b, tmp), two_users, rounds=rounds,
                    mode=mode, gates=[GATE])
    print(f"\n{result.describe()}")
    return result


def gated(result: ABResult) -> str:
    return next(row for row in result.comparison.rows if row.metric == GATE.key).verdict


def test_an_identical_pair_reads_no_change_and_a_slower_one_regressed(tmp_path: Path) -> None:
    with stubs(5, 5) as (a, b):
        same = compare(a, b, tmp_path, "interleave")
    assert gated(same) == NO_CHANGE
    assert not same.failed
    assert same.order == (0, 1, 1, 0, 0, 1, 1, 0)
    with stubs(5, 6) as (a, b):
        slower = compare(a, b, tmp_path, "interleave")
    assert gated(slower) == REGRESSED
    (row,) = slower.failed
    assert 0.12 < row.change < 0.28  # +20 % per token, diluted a little by the fixed first token


def test_under_drift_sequential_fails_while_interleaved_holds(tmp_path: Path) -> None:
    drift = ("--drift-ms-per-s", "0.6", "--drift-from", f"{time.time():.3f}")
    with stubs(5, 5, *drift) as (a, b):
        sequential = compare(a, b, tmp_path, "sequential")
        interleaved = compare(a, b, tmp_path, "interleave")
        bracketed = compare(a, b, tmp_path, "bracket", rounds=2)
    assert gated(sequential) == REGRESSED  # the drift, read as a regression
    assert gated(interleaved) != REGRESSED
    assert not interleaved.failed
    assert interleaved.drift is not None and interleaved.drift.drifted  # it did drift
    # A B A, one side at a time: A moved between its blocks, so nothing is called regressed.
    assert bracketed.inconclusive_drift
    assert gated(bracketed) == INCONCLUSIVE or gated(bracketed) == NO_CHANGE
    assert not bracketed.failed
    row = next(row for row in bracketed.comparison.rows if row.metric == GATE.key)
    if row.verdict == INCONCLUSIVE and row.note:
        assert "the machine drifted by +" in row.note

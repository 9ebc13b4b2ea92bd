"""Two builds on one host, measured in one session: their windows alternate, so the drift of a
machine (thermal state, page cache, a neighbour's load) falls on both sides alike.

``run_ab`` measures the same load on side A (the baseline, e.g. "before") and side B (the
candidate, "after") in one of three orders, and :func:`compare_sides` holds B's windows against
A's with the baseline gate's statistics (:func:`pytest_llmperf.store.compare.compare_windows`:
every window of a side is one window of that side's pool, as ``--llmperf-repeats`` windows are):

- ``interleave`` (both servers up at once: two virtualenvs of an engine on two ports, two GPU
  sets, two attached URLs): rounds ``A B``, ``B A``, ``A B``, ``B A`` ...  Counterbalanced, not
  ``A B A B``: in ``A B A B`` every B window runs one slot after its A window, so a drift of d
  per slot puts B d/2 behind A on average (a false regression under a machine that warms up
  or slows down).  In ``A B B A`` the A windows sit at slots 0 and 3, the B windows at 1 and 2:
  the same mean slot, so a linear drift cancels exactly in every pair of rounds (with an odd
  number of rounds one half-slot of drift is left; use an even number).
- ``bracket`` (the sides cannot run together: one GPU, one port; each side's server is stopped
  before the other's starts): ``A B A B ... A``.  B's blocks are compared with A's blocks
  around them, and A's first block with its last says whether the machine drifted: when A
  moved by more than the tolerance, a regressed or improved verdict becomes inconclusive ("the
  machine drifted by +12.0 % between the first and last A blocks"), never a false regression.
- ``sequential``: ``A A ... B B ...``, what two separate sessions amount to.  It is here to be
  measured against (tests/unit/test_ab_simulation.py); a drift reads as a change.

Nothing here imports pytest; the plugin's ``llmperf_ab`` fixture records what this returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pytest_llmperf.bench.bench import Bench
    from pytest_llmperf.results.comparison import Comparison, Row
    from pytest_llmperf.results.thresholds import Gate
    from pytest_llmperf.results.window import WindowResult

__all__ = ["MODES", "ABResult", "ABSide", "Drift", "Mode", "compare_sides", "run_ab",
           "schedule"]

Mode = Literal["interleave", "bracket", "sequential"]
MODES: tuple[Mode, ...] = ("interleave", "bracket", "sequential")
_DONE = {"interleave": "interleaved", "bracket": "bracketed", "sequential": "sequential"}
# The metric the drift is read on when no gate names one.
DRIFT_METRIC = "tpot_ms.mean"


def schedule(rounds: int, mode: Mode) -> tuple[int, ...]:
    """The order of the windows, 0 for side A and 1 for side B: ``rounds`` windows of each side
    (``bracket``: ``rounds`` of B between ``rounds + 1`` of A)."""
    if rounds < 1:
        raise ValueError(f"an A/B comparison needs at least 1 round, got {rounds}")
    if mode == "interleave":
        return tuple(side for i in range(rounds) for side in ((0, 1) if i % 2 == 0 else (1, 0)))
    if mode == "bracket":
        return (0, *(side for _ in range(rounds) for side in (1, 0)))
    if mode == "sequential":
        return (0,) * rounds + (1,) * rounds
    raise ValueError(f"unknown A/B mode {mode!r}: use one of {', '.join(MODES)}")


@dataclass(frozen=True)
class ABSide:
    """One side: its name ("before") and how to have its bench (a context manager that starts
    the side's server, or attaches to it, and stops it when left)."""

    name: str
    open: Callable[[], AbstractContextManager[Bench]]


@dataclass(frozen=True)
class Drift:
    """How far side A moved between its first and its last window, on ``metric``."""

    metric: str
    first: float
    last: float
    tolerance: float

    @property
    def change(self) -> float:
        return self.last / self.first - 1 if self.first else 0.0

    @property
    def drifted(self) -> bool:
        return abs(self.change) > self.tolerance

    def describe(self, name: str = "A") -> str:
        moved = "drifted" if self.drifted else "held"
        return (f"the machine {moved}: {name}'s {self.metric} went {self.first:.4g} -> "
                f"{self.last:.4g} ({self.change * 100:+.1f} %) between its first and last "
                f"window (tolerance {self.tolerance * 100:.1f} %)")


@dataclass(frozen=True)
class ABResult:
    """Both sides' windows in the order they ran (``order[i]``: 0 for A, 1 for B), B held
    against A (``comparison``: its rows' baseline is A), and A's drift."""

    names: tuple[str, str]
    mode: Mode
    order: tuple[int, ...]
    windows: tuple[WindowResult, ...]
    comparison: Comparison
    drift: Drift | None

    def side(self, index: int) -> tuple[WindowResult, ...]:
        return tuple(w for s, w in zip(self.order, self.windows, strict=True) if s == index)

    @property
    def failed(self) -> tuple[Row, ...]:
        """The gated rows that regressed with confidence (a drifted bracket has none)."""
        return self.comparison.failed

    @property
    def inconclusive_drift(self) -> bool:
        """The machine drifted between A's blocks, so the verdicts were made inconclusive."""
        return self.mode == "bracket" and self.drift is not None and self.drift.drifted

    def describe(self) -> str:
        """One line per gated (or changed) row, then the drift."""
        a, b = self.names
        lines = [f"{b} against {a}, {_DONE[self.mode]} ({len(self.side(0))} + {len(self.side(1))} "
                 f"windows, order {' '.join('AB'[s] for s in self.order)})"]
        for row in self.comparison.rows:
            if row.gate is not None or row.verdict not in ("no significant change",):
                lines.append(f"  {row.metric}: {row.describe()}")
        if self.drift is not None:
            lines.append(f"  {self.drift.describe(a)}")
        return "\n".join(lines)


def _drift(a_windows: Sequence[WindowResult], gates: Sequence[Gate], seed: int) -> Drift | None:
    """A's first window against its last, on the first gate's metric (else TPOT mean)."""
    from pytest_llmperf.store.compare import DEFAULT_TOLERANCE, compare_windows

    if len(a_windows) < 2:
        return None
    key = gates[0].key if gates else DRIFT_METRIC
    chosen = [gate for gate in gates if gate.key == key]
    rows = compare_windows([a_windows[0]], [a_windows[-1]], chosen, seed=seed,
                           metrics=(key,)).rows
    if not rows:
        return None
    row = rows[0]
    return Drift(key, row.baseline, row.current,
                 row.tolerance if chosen else DEFAULT_TOLERANCE)


def compare_sides(order: Sequence[int], windows: Sequence[WindowResult],
                  names: tuple[str, str] = ("A", "B"), *, mode: Mode = "interleave",
                  gates: Sequence[Gate] = (), seed: int = 0,
                  metrics: Sequence[str] | None = None) -> ABResult:
    """Hold side B's windows against side A's (``order[i]`` says whose ``windows[i]`` is) with
    the baseline gate's statistics; ``metrics``: the rows (default: the baseline comparison's
    rows).  In ``bracket`` mode, a drift of A beyond the tolerance turns B's regressed and
    improved verdicts inconclusive, and says so in every row it leaves short of "no significant
    change"."""
    from pytest_llmperf.results.statistics import IMPROVED, INCONCLUSIVE, REGRESSED
    from pytest_llmperf.store.compare import ROW_METRICS, compare_windows

    if len(order) != len(windows):
        raise ValueError(f"{len(order)} sides for {len(windows)} windows")
    a = [w for s, w in zip(order, windows, strict=True) if s == 0]
    b = [w for s, w in zip(order, windows, strict=True) if s == 1]
    if not a or not b:
        raise ValueError("an A/B comparison needs windows of both sides")
    # Interleaved rounds pair up: the i-th A and B windows ran next to each other (A B, then
    # B A), so they are redrawn together and what the machine did meanwhile cancels; pooled
    # unpaired, the drift between rounds would count as noise and hide a real change.
    paired = mode == "interleave" and len(a) == len(b) >= 2
    comparison = compare_windows(a, b, gates,
                                 label=f"{names[0]} ({_DONE[mode]} with {names[1]})",
                                 seed=seed, metrics=ROW_METRICS if metrics is None else metrics,
                                 paired=paired)
    drift = _drift(a, gates, seed)
    if mode == "bracket" and drift is not None and drift.drifted:
        note = (f"the machine drifted by {drift.change * 100:+.1f} % between the first and last "
                f"{names[0]} blocks ({drift.metric}): the comparison is inconclusive")
        rows = tuple(dataclasses.replace(row, verdict=INCONCLUSIVE,
                                         note=f"{row.note}; {note}" if row.note else note)
                     if row.verdict in (REGRESSED, IMPROVED, INCONCLUSIVE) else row
                     for row in comparison.rows)
        comparison = dataclasses.replace(comparison, rows=rows)
    return ABResult(names, mode, tuple(order), tuple(windows), comparison, drift)


def run_ab(a: ABSide, b: ABSide, measure: Callable[[Bench], WindowResult], *,
           rounds: int = 4, mode: Mode = "interleave", gates: Sequence[Gate] = (),
           seed: int = 0, metrics: Sequence[str] | None = None,
           on_window: Callable[[int, WindowResult], None] | None = None,
           progress: Callable[[str], None] | None = None) -> ABResult:
    """Measure ``measure(bench)`` (one load: ``lambda bench: bench.window(users=2)``) on both
    sides in ``mode``'s order and compare them.  ``interleave`` keeps both sides' servers up for
    the whole comparison; ``bracket`` and ``sequential`` open a side for each run of its windows
    and close it before the other side opens.  ``on_window(side, window)`` is told each window
    (every repeat of a ``--llmperf-repeats`` load) as it is measured."""
    order = schedule(rounds, mode)
    sides = (a, b)
    ran: list[int] = []
    windows: list[WindowResult] = []

    def one(side: int, bench: Bench) -> None:
        if progress is not None:
            progress(f"A/B {mode}: window {len(ran) + 1} of {len(order)}: {sides[side].name}")
        for window in measure(bench).windows:
            ran.append(side)
            windows.append(window)
            if on_window is not None:
                on_window(side, window)

    if mode == "interleave":
        with contextlib.ExitStack() as stack:
            benches = [stack.enter_context(side.open()) for side in sides]
            for side in order:
                one(side, benches[side])
    else:
        for side, count in _runs(order):
            with sides[side].open() as bench:
                for _ in range(count):
                    one(side, bench)
    return compare_sides(ran, windows, (a.name, b.name), mode=mode, gates=gates, seed=seed,
                         metrics=metrics)


def _runs(order: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(side, how many windows in a row) of an order."""
    start = 0
    for i in range(1, len(order) + 1):
        if i == len(order) or order[i] != order[start]:
            yield order[start], i - start
            start = i

"""Compare a run with a saved baseline: per test and metric, the change, its confidence interval
and a verdict (``regressed``, ``improved``, ``no significant change``, ``inconclusive``).

Both sides are recomputed from their stored raw requests with the one set of metric definitions
(:mod:`pytest_llmperf.results.metrics`), so a baseline written by an older release is read the
same way.  A test's windows are matched by node id and by which ``llmperf_load`` call of the
test made them (``call``); the windows of one call (``--llmperf-repeats``) are compared together.
The statistics are in :mod:`pytest_llmperf.results.statistics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmperf.results.metrics import (
    DISTRIBUTIONS,
    RESOURCES,
    MetricInfo,
    metric_info,
    statistic,
    summarize,
)
from pytest_llmperf.results.thresholds import COMPARABLE, Gate
from pytest_llmperf.store.documents import decode_window

__all__ = ["DEFAULT_TOLERANCE", "HARDWARE_KEYS", "ROW_METRICS", "Comparison", "Row",
           "compare_windows", "group_windows", "hardware_differences", "window_key"]

# The tolerance of a table row no gate names: changes within +-5 % read "no significant change".
DEFAULT_TOLERANCE = 0.05
# What must match for two runs to be compared (observe.host.host_fingerprint).
HARDWARE_KEYS = ("cpu_model", "cpu_cores", "gpu_models", "gpu_count", "gpu_driver", "cuda")
REPEATS_NOTE = ("one value per window: needs several windows on a side (--llmperf-repeats 3, or "
                "--llmperf-compare-runs 3)")
SPREAD_NOTE = ("the run-to-run spread sets this interval: more runs (--llmperf-compare-runs, "
               "--llmperf-repeats) narrow it, more requests hardly")
# The rows every comparison shows, beside the gated ones.
ROW_METRICS: tuple[str, ...] = (
    *(f"{name}.{stat}" for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms",
                                    "decode_tokens_per_s")
      for stat in ("mean", "median", "p95", "p99")),
    *COMPARABLE,
)


@dataclass(frozen=True)
class Row:
    """One metric of one test: baseline and current values, the change and its interval (as
    fractions: 0.12 = 12 % higher), and the verdict at ``tolerance``."""

    metric: str  # "tpot_ms.p95"
    unit: str
    higher_is_better: bool
    baseline: float
    current: float
    change: float
    low: float | None  # None: no interval (see note)
    high: float | None
    verdict: str
    tolerance: float
    gate: Gate | None = None
    needed: int | None = None  # requests per window that would settle an inconclusive verdict
    note: str | None = None

    @property
    def failed(self) -> bool:
        """The gate's tolerance was exceeded with confidence."""
        from pytest_llmperf.results.statistics import REGRESSED

        return self.gate is not None and self.verdict == REGRESSED

    def describe(self) -> str:
        """``regressed: +23.1 % [+18.0, +28.5] (gate tpot_ms.p95:10%)``."""
        text = f"{self.verdict}: {self.change * 100:+.1f} %"
        if self.low is not None and self.high is not None:
            text += f" [{self.low * 100:+.1f}, {self.high * 100:+.1f}]"
        if self.gate is not None:
            text += f" (gate {self.gate.text}, {self.gate.origin})"
        if self.needed is not None:
            text += f"; about {self.needed} requests per window would settle it"
        if self.note:
            text += f"; {self.note}"
        return text


@dataclass(frozen=True)
class Comparison:
    """A test's rows, with what both sides ran (engine strings differ after an upgrade)."""

    rows: tuple[Row, ...]
    baseline_engine: str
    current_engine: str
    baseline_windows: int
    current_windows: int
    hardware_note: str | None = None  # set when compared across hardware (labelled rows)
    # The engine's own decode time moved much less than the client's TPOT: the client's view
    # changed (a starved client, a slower network), not only the server.
    cross_check: str | None = None

    @property
    def failed(self) -> tuple[Row, ...]:
        return tuple(row for row in self.rows if row.failed)


def window_key(entry: Mapping[str, Any], position: int = 1) -> tuple[str, int]:
    """(node id, call) of a stored window; entries written before ``call`` existed count by
    position among the windows of their test."""
    return str(entry.get("nodeid", "")), int(entry.get("call", position))


def group_windows(entries: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int],
                                                                 list[Mapping[str, Any]]]:
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    seen: dict[str, int] = {}
    for entry in entries:
        nodeid = str(entry.get("nodeid", ""))
        seen[nodeid] = seen.get(nodeid, 0) + 1
        groups.setdefault(window_key(entry, seen[nodeid]), []).append(entry)
    return groups


def hardware_differences(baseline: Mapping[str, Any], current: Mapping[str, Any]
                         ) -> list[tuple[str, Any, Any]]:
    return [(key, baseline.get(key), current.get(key)) for key in HARDWARE_KEYS
            if baseline.get(key) != current.get(key)]


def compare_windows(
    baseline: Sequence[Mapping[str, Any]],
    current: Sequence[Mapping[str, Any]],
    gates: Sequence[Gate] = (),
    *,
    seed: int = 0,
    hardware_note: str | None = None,
) -> Comparison:
    """Rows for every metric in :data:`ROW_METRICS` and every gate, both sides measured."""
    base = [summarize(decode_window(window, "baseline")) for window in baseline]
    now = [summarize(decode_window(window, "this run")) for window in current]
    users = int(current[0]["load"]["concurrency"])
    requests = len(current[0]["records"])
    gated = {gate.key: gate for gate in gates}
    rows = []
    for key in dict.fromkeys([*ROW_METRICS, *gated]):
        metric, _, stat = key.partition(".")
        gate = gated.get(key)
        if metric in DISTRIBUTIONS:
            row = _distribution_row(key, metric, stat, base, now, gate, users, requests, seed)
        else:
            row = _window_row(key, metric, _figures(baseline, base, metric),
                              _figures(current, now, metric), gate)
        if row is not None:
            rows.append(row if hardware_note is None else _labelled(row, hardware_note))
    return Comparison(tuple(rows), _engine(baseline[0]), _engine(current[0]), len(baseline),
                      len(current), hardware_note,
                      _cross_check(rows, _server_decode(baseline), _server_decode(current)))


# How far (in points of change) the client's TPOT may move beyond the engine's own decode time
# before the comparison says the client's view changed.
CROSS_CHECK_POINTS = 0.05


def _server_decode(windows: Sequence[Mapping[str, Any]]) -> float | None:
    """The engine's own decode ms per token over the windows (llama.cpp, vLLM, SGLang report
    it; see observe.server_metrics), or None when a window lacks it."""
    values = [(w.get("server_metrics") or {}).get("server_decode_ms_per_token") for w in windows]
    if not values or None in values:
        return None
    return statistic([float(v) for v in values if v is not None], "mean")


def _cross_check(rows: Sequence[Row], before: float | None, after: float | None) -> str | None:
    tpot = next((row for row in rows if row.metric == "tpot_ms.mean"), None)
    if tpot is None or not before or after is None:
        return None
    server = after / before - 1
    if abs(tpot.change - server) <= CROSS_CHECK_POINTS:
        return None
    return (f"the engine's own decode time went {before:.2f} -> {after:.2f} ms/token "
            f"({server * 100:+.1f} %) while the client's TPOT mean moved {tpot.change * 100:+.1f} "
            "%: part of the change is in what the client saw (a starved client or a busy "
            "machine), not in the server")


def _info(metric: str) -> MetricInfo:
    return metric_info(metric)


def _engine(window: Mapping[str, Any]) -> str:
    sha = window.get("model_sha256")
    return f"{window.get('engine', '?')}" + (f", model sha256 {str(sha)[:12]}" if sha else "")


def _tolerance(gate: Gate | None, baseline: float) -> float | None:
    return DEFAULT_TOLERANCE if gate is None else gate.relative_tolerance(baseline)


def _distribution_row(key: str, metric: str, stat: str, base: Sequence[Any], now: Sequence[Any],
                      gate: Gate | None, users: int, requests: int, seed: int) -> Row | None:
    from pytest_llmperf.results.statistics import (
        INCONCLUSIVE,
        change_verdict,
        ratio_interval,
        requests_to_settle,
    )

    base_values = [run.distributions[metric] for run in base]
    now_values = [run.distributions[metric] for run in now]
    if not all(base_values) or not all(now_values):
        return None  # a side measured none of it (e.g. no TPOT: every answer one chunk)
    info = _info(metric)
    before = statistic([v for values in base_values for v in values], stat)
    after = statistic([v for values in now_values for v in values], stat)
    tolerance = _tolerance(gate, before)
    if before == 0 or tolerance is None:
        return Row(key, info.unit, info.higher_is_better, before, after, 0.0, None, None,
                   INCONCLUSIVE, 0.0, gate, note="the baseline's value is 0: no ratio")
    low, high = ratio_interval(base_values, now_values, stat, users=users, seed=seed)
    verdict = change_verdict(low, high, tolerance, info.higher_is_better)
    point = after / before
    needed, note = None, None
    if verdict == INCONCLUSIVE and len(base) == len(now) == 1:
        needed = requests_to_settle(requests, low, high, point, tolerance)
    elif verdict == INCONCLUSIVE:
        note = SPREAD_NOTE
    return Row(key, info.unit, info.higher_is_better, before, after, point - 1, low - 1,
               high - 1, verdict, tolerance, gate, needed, note)


def _figures(windows: Sequence[Mapping[str, Any]], runs: Sequence[Any], metric: str
             ) -> list[float] | None:
    """One whole-window number per window; None when a window lacks it (no GPU, say)."""
    values = []
    for window, run in zip(windows, runs, strict=True):
        if metric in RESOURCES:
            value = ((window.get("resources") or {}).get("metrics") or {}).get(metric)
        else:
            value = run.value(metric)
        if value is None:
            return None
        values.append(float(value))
    return values


def _window_row(key: str, metric: str, base_values: list[float] | None,
                now_values: list[float] | None, gate: Gate | None) -> Row | None:
    from pytest_llmperf.results.statistics import INCONCLUSIVE, change_verdict, windows_interval

    if not base_values or not now_values:
        return None
    info = _info(metric)
    before = statistic(base_values, "mean")
    after = statistic(now_values, "mean")
    tolerance = _tolerance(gate, before)
    change = after / before - 1 if before else 0.0
    interval = windows_interval(base_values, now_values) if tolerance is not None else None
    if interval is None:
        return Row(key, info.unit, info.higher_is_better, before, after, change, None, None,
                   INCONCLUSIVE, tolerance or 0.0, gate,
                   note=REPEATS_NOTE)
    low, high = interval
    verdict = change_verdict(low, high, tolerance or 0.0, info.higher_is_better)
    # The interval is symmetric in logs around the ratio of geometric means: report that ratio,
    # so the change always lies inside its own interval.
    change = math.sqrt(low * high) - 1
    return Row(key, info.unit, info.higher_is_better, before, after, change, low - 1, high - 1,
               verdict, tolerance or 0.0, gate)


def _labelled(row: Row, note: str) -> Row:
    from dataclasses import replace

    return replace(row, note=f"{row.note}; {note}" if row.note else note)

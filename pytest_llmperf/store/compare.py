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

from pytest_llmperf.results.comparison import Comparison, Row
from pytest_llmperf.results.metrics import DISTRIBUTIONS, RunMetrics, metric_info, statistic
from pytest_llmperf.results.recorded import RecordedWindow
from pytest_llmperf.results.thresholds import COMPARABLE, Gate
from pytest_llmperf.results.window import WindowResult

__all__ = ["DEFAULT_TOLERANCE", "HARDWARE_KEYS", "ROW_METRICS", "compare_windows",
           "group_windows", "hardware_differences"]

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


def group_windows(windows: Iterable[RecordedWindow], host: str | None = None
                  ) -> dict[tuple[str, int], list[WindowResult]]:
    """The windows ``host`` measured (None: the session's own host) by (node id, call): the
    windows of one load (``--llmperf-repeats``) together.  Another host's are never mixed in."""
    groups: dict[tuple[str, int], list[WindowResult]] = {}
    for recorded in windows:
        if recorded.provenance.host != host:
            continue
        key = (recorded.provenance.nodeid, recorded.provenance.call)
        groups.setdefault(key, []).append(recorded.window)
    return groups


def hardware_differences(baseline: Mapping[str, object], current: Mapping[str, object]
                         ) -> list[tuple[str, object, object]]:
    return [(key, baseline.get(key), current.get(key)) for key in HARDWARE_KEYS
            if baseline.get(key) != current.get(key)]


def compare_windows(
    baseline: Sequence[WindowResult],
    current: Sequence[WindowResult],
    gates: Sequence[Gate] = (),
    *,
    label: str = "baseline",
    seed: int = 0,
    hardware_note: str | None = None,
    metrics: Sequence[str] = ROW_METRICS,
    paired: bool = False,
) -> Comparison:
    """Rows for every metric in ``metrics`` (default :data:`ROW_METRICS`) and every gate, both
    sides measured; ``label`` names the baseline in the comparison.  ``paired``: the i-th
    windows of the two sides ran side by side (bench.ab's interleaved rounds) and are redrawn
    together (statistics.ratio_interval)."""
    base = [window.metrics for window in baseline]
    now = [window.metrics for window in current]
    users = current[0].run.concurrency
    requests = current[0].requests
    gated = {gate.key: gate for gate in gates}
    rows = []
    for key in dict.fromkeys([*metrics, *gated]):
        metric, _, stat = key.partition(".")
        gate = gated.get(key)
        if metric in DISTRIBUTIONS:
            row = _distribution_row(key, metric, stat, base, now, gate, users, requests, seed,
                                    paired)
        else:
            row = _window_row(key, metric, _figures(base, metric), _figures(now, metric), gate,
                              paired)
        if row is not None:
            rows.append(row if hardware_note is None else _labelled(row, hardware_note))
    return Comparison(label, tuple(rows), _engine(baseline[0]), _engine(current[0]),
                      len(baseline), len(current), hardware_note,
                      _cross_check(rows, _server_decode(baseline), _server_decode(current)))


# How far (in points of change) the client's TPOT may move beyond the engine's own decode time
# before the comparison says the client's view changed.
CROSS_CHECK_POINTS = 0.05


def _server_decode(windows: Sequence[WindowResult]) -> float | None:
    """The engine's own decode ms per token over the windows (llama.cpp, vLLM, SGLang report
    it; see observe.server_metrics), or None when a window lacks it."""
    values = [(w.server_metrics or {}).get("server_decode_ms_per_token") for w in windows]
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


def _engine(window: WindowResult) -> str:
    sha = window.served.model_sha256
    return window.served.engine + (f", model sha256 {sha[:12]}" if sha else "")


def _tolerance(gate: Gate | None, baseline: float) -> float | None:
    return DEFAULT_TOLERANCE if gate is None else gate.relative_tolerance(baseline)


def _distribution_row(key: str, metric: str, stat: str, base: Sequence[RunMetrics],
                      now: Sequence[RunMetrics], gate: Gate | None, users: int, requests: int,
                      seed: int, paired: bool = False) -> Row | None:
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
    info = metric_info(metric)
    before = statistic([v for values in base_values for v in values], stat)
    after = statistic([v for values in now_values for v in values], stat)
    tolerance = _tolerance(gate, before)
    if before == 0 or tolerance is None:
        return Row(key, info.unit, info.higher_is_better, before, after, 0.0, None, None,
                   INCONCLUSIVE, 0.0, gate, note="the baseline's value is 0: no ratio")
    low, high = ratio_interval(base_values, now_values, stat, users=users, seed=seed,
                               paired=paired)
    verdict = change_verdict(low, high, tolerance, info.higher_is_better)
    point = after / before
    needed, note = None, None
    if verdict == INCONCLUSIVE and len(base) == len(now) == 1:
        needed = requests_to_settle(requests, low, high, point, tolerance)
    elif verdict == INCONCLUSIVE:
        note = SPREAD_NOTE
    return Row(key, info.unit, info.higher_is_better, before, after, point - 1, low - 1,
               high - 1, verdict, tolerance, gate, needed, note)


def _figures(runs: Sequence[RunMetrics], metric: str) -> list[float] | None:
    """One whole-window number per window (resources included); None when a window lacks it
    (no GPU, say)."""
    values = [run.value(metric) for run in runs]
    if any(value is None for value in values):
        return None
    return [float(value) for value in values if value is not None]


def _window_row(key: str, metric: str, base_values: list[float] | None,
                now_values: list[float] | None, gate: Gate | None,
                paired: bool = False) -> Row | None:
    from pytest_llmperf.results.statistics import INCONCLUSIVE, change_verdict, windows_interval

    if not base_values or not now_values:
        return None
    info = metric_info(metric)
    before = statistic(base_values, "mean")
    after = statistic(now_values, "mean")
    tolerance = _tolerance(gate, before)
    change = after / before - 1 if before else 0.0
    interval = (windows_interval(base_values, now_values, paired=paired)
                if tolerance is not None else None)
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

"""The chart of a sweep or a capacity search: what each load gave, with the SLO limits drawn.

Four panels against the load (users or req/s): output throughput, per-user decode speed,
p95 TTFT and p95 TPOT.  A limit the test holds that figure to is a dashed red line; a capacity
search marks its passing probes with circles, failing ones with crosses, and the capacity with
a vertical green line.  matplotlib is optional: without it there is no chart.
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_llmperf.results.capacity import CapacityResult
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.recorded import RecordedCapacity, RecordedSweep

__all__ = ["write_capacity_chart", "write_load_chart", "write_sweep_chart"]

_PANELS = (
    ("output_token_throughput", "output tok/s", None),
    ("decode_tokens_per_s_mean", "decode tok/s per user\n(mean)", "decode_tokens_per_s.mean"),
    ("ttft_ms_p95", "TTFT p95 ms", "ttft_ms.p95"),
    ("tpot_ms_p95", "TPOT p95 ms", "tpot_ms.p95"),
)


def write_sweep_chart(sweep: RecordedSweep, path: Path) -> Path | None:
    target = f"{sweep.served.model} on {sweep.served.backend}"
    title = f"sweep over {sweep.dimension}, {target}"
    if sweep.dimension == "input_tokens":
        title = f"prefill: TTFT and speed by prompt length, {target}"
    elif sweep.staged:
        title = f"staged rates, each stage at its (mean) rate, {target}"
    return write_load_chart(path, title=title, dimension=sweep.dimension, points=sweep.rows,
                            slo_lines=sweep.slo_lines)


def write_capacity_chart(recorded: RecordedCapacity, path: Path) -> Path | None:
    search = recorded.search
    title = (f"capacity search ({search.dimension}), {recorded.served.model} on "
             f"{recorded.served.backend}: {search.summary}")
    return write_load_chart(path, title=title, dimension=search.dimension,
                            points=[p.point for p in search.counted if p.point is not None],
                            slo_lines=recorded.slo_lines, search=search)


def write_load_chart(path: Path, *, title: str, dimension: str,
                     points: Sequence[LoadPoint], slo_lines: Mapping[str, float],
                     search: CapacityResult | None = None) -> Path | None:
    """The chart of a sweep's ``points`` (or, with ``search``, a capacity search's probes) as a
    PNG at ``path``; None without matplotlib or with fewer than two loads."""
    try:  # through importlib: mypy must not need matplotlib's stubs either
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
        ticker: Any = importlib.import_module("matplotlib.ticker")
    except ImportError:
        return None
    passed = ([probe.passed for probe in search.counted if probe.point is not None]
              if search is not None else None)
    if len({point.load for point in points}) < 2:
        return None
    unit = {"users": "users", "input_tokens": "input tokens per prompt (the user's text)"
            }.get(dimension, "requests per second")
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, (field, panel_title, slo) in zip(axes.flat, _PANELS, strict=True):
        _panel(ax, points, field, passed)
        limit = slo_lines.get(slo) if slo else None
        if limit is not None:
            ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1,
                       label=f"SLO {slo} {limit:g}")
        if search is not None and search.capacity is not None:
            ax.axvline(search.capacity, color="tab:green", linewidth=1, alpha=0.7,
                       label=f"capacity {search.capacity:g}")
        if search is not None or limit is not None:
            ax.legend(fontsize=7, loc="best")
        if dimension != "rate":
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_title(panel_title, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel(unit, fontsize=8)
    # Wrapped: a capacity search's headline runs to a few hundred characters.
    figure.suptitle("\n".join(textwrap.wrap(title, 120, max_lines=3, placeholder=" ...")),
                    fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _panel(ax: Any, points: Sequence[LoadPoint], field: str,
           passed: Sequence[bool] | None) -> None:
    # The line through each load's mean (a capacity search may probe a load twice), the
    # probes as markers on it.
    by_load: dict[float, list[float]] = {}
    for point in points:
        value = point.figure(field)
        if value is not None:
            by_load.setdefault(point.load, []).append(value)
    loads = sorted(by_load)
    means = [sum(by_load[x]) / len(by_load[x]) for x in loads]
    ax.plot(loads, means, color="tab:blue", linewidth=1.2)
    if passed is None:
        ax.plot(loads, means, "o", color="tab:blue", markersize=4)
        return
    for wanted, marker, color in ((True, "o", "tab:green"), (False, "x", "tab:red")):
        marked = [(point.load, point.figure(field)) for point, ok in zip(points, passed,
                                                                          strict=True)
                  if ok is wanted and point.figure(field) is not None]
        if marked:
            ax.plot(*zip(*marked, strict=True), marker, color=color, markersize=6,
                    label="passed" if wanted else "failed")

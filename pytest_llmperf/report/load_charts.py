"""The chart of a sweep or a capacity search: what each load gave, with the SLO limits drawn.

Four panels against the load (users or req/s): output throughput, per-user decode speed,
p95 TTFT and p95 TPOT.  A limit the test holds that figure to is a dashed red line; a capacity
search marks its passing probes with circles, failing ones with crosses, and the capacity with
a vertical green line.  matplotlib is optional: without it there is no chart.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_load_chart"]

_PANELS = (
    ("output_token_throughput", "output tok/s", None),
    ("decode_tokens_per_s_mean", "decode tok/s per user\n(mean)", "decode_tokens_per_s.mean"),
    ("ttft_ms_p95", "TTFT p95 ms", "ttft_ms.p95"),
    ("tpot_ms_p95", "TPOT p95 ms", "tpot_ms.p95"),
)


def write_load_chart(entry: Mapping[str, Any], path: Path) -> Path | None:
    """The chart of a sweep or capacity entry (report.entry) as a PNG at ``path``; None without
    matplotlib or with fewer than two loads."""
    try:  # through importlib: mypy must not need matplotlib's stubs either
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
        ticker: Any = importlib.import_module("matplotlib.ticker")
    except ImportError:
        return None
    rows = entry["rows"]
    if len({row["load"] for row in rows}) < 2:
        return None
    unit = {"users": "users", "input_tokens": "input tokens per prompt (the user's text)"
            }.get(entry["dimension"], "requests per second")
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, (field, title, slo) in zip(axes.flat, _PANELS, strict=True):
        _panel(ax, rows, field, entry)
        limit = entry.get("slo_lines", {}).get(slo) if slo else None
        if limit is not None:
            ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1,
                       label=f"SLO {slo} {limit:g}")
        if entry.get("kind") == "capacity" and entry.get("capacity") is not None:
            ax.axvline(entry["capacity"], color="tab:green", linewidth=1, alpha=0.7,
                       label=f"capacity {entry['capacity']:g}")
        if entry.get("kind") == "capacity" or limit is not None:
            ax.legend(fontsize=7, loc="best")
        if entry["dimension"] != "rate":
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel(unit, fontsize=8)
    figure.suptitle(_title(entry), fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _panel(ax: Any, rows: list[Mapping[str, Any]], field: str, entry: Mapping[str, Any]) -> None:
    # The line through each load's mean (a capacity search may probe a load twice), the
    # probes as markers on it.
    by_load: dict[float, list[float]] = {}
    for row in rows:
        if row.get(field) is not None:
            by_load.setdefault(row["load"], []).append(row[field])
    loads = sorted(by_load)
    ax.plot(loads, [sum(by_load[x]) / len(by_load[x]) for x in loads], color="tab:blue",
            linewidth=1.2)
    if entry.get("kind") != "capacity":
        ax.plot(loads, [sum(by_load[x]) / len(by_load[x]) for x in loads], "o",
                color="tab:blue", markersize=4)
        return
    for passed, marker, color in ((True, "o", "tab:green"), (False, "x", "tab:red")):
        points = [(row["load"], row[field]) for row in rows
                  if row.get("passed") is passed and row.get(field) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker, color=color, markersize=6,
                    label="passed" if passed else "failed")


def _title(entry: Mapping[str, Any]) -> str:
    target = f"{entry.get('model')} on {entry.get('backend')}"
    if entry.get("kind") == "capacity":
        return f"capacity search ({entry['dimension']}), {target}: {entry['summary']}"[:160]
    if entry["dimension"] == "input_tokens":
        return f"prefill: TTFT and speed by prompt length, {target}"
    return f"sweep over {entry['dimension']}, {target}"

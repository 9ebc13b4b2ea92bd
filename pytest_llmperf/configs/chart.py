"""The Pareto chart of one model's configurations: per-user decode speed against output
throughput per GPU (per dollar when prices are given), each configuration's loads from its
capacity probes, sweep or windows, the decode-speed SLO drawn, the front marked.  matplotlib is
optional: without it there is no chart."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_llmperf.configs.figures import TestFigures
from pytest_llmperf.configs.prices import Prices
from pytest_llmperf.results.load_point import LoadPoint

__all__ = ["Point", "pareto_front", "points_of", "write_pareto_png"]

Point = tuple[float, float, bool]  # x (throughput per GPU or per dollar), y (decode), held


def points_of(figures: TestFigures, prices: Prices) -> list[Point] | None:
    """The chart's points of one configuration; None when it cannot be placed (per dollar
    without its price)."""
    if prices:
        hourly = prices.hourly(figures.run.config)
        if not hourly:
            return None
        scale = 3600.0 / hourly / 1e6  # tok/s -> million tokens per dollar
    else:
        scale = 1.0 / max(1, figures.run.config.gpu_count)
    points = []
    for point, held in sorted(figures.curve, key=lambda item: item[0].load):
        x, y = point.output_token_throughput, point.decode_tokens_per_s_mean
        if x is not None and y is not None:
            points.append((x * scale, y, held))
    return points


def _placed(figures: TestFigures) -> list[tuple[LoadPoint, bool]]:
    """The curve's entries that :func:`points_of` placed, in its order."""
    return [(point, held) for point, held in sorted(figures.curve, key=lambda i: i[0].load)
            if point.output_token_throughput is not None
            and point.decode_tokens_per_s_mean is not None]


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The held points no other held point beats on both axes, left to right."""
    held = [p for p in points if p[2]]
    front = [p for p in held
             if not any(q[0] >= p[0] and q[1] >= p[1] and (q[0], q[1]) != (p[0], p[1])
                        for q in held)]
    return sorted(set(front))


def write_pareto_png(model: str, test: str, group: Sequence[TestFigures], prices: Prices,
                     path: Path) -> Path | None:
    """The chart as a PNG at ``path``; None without matplotlib or with nothing to draw."""
    try:  # through importlib: mypy must not need matplotlib's stubs either
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return None
    series = [(f, pts) for f in group if (pts := points_of(f, prices))]
    if not series:
        return None
    figure, ax = plt.subplots(figsize=(8, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    everything: list[Point] = []
    for index, (figures, points) in enumerate(series):
        color = colors[index % len(colors)]
        config = figures.run.config
        label = f"{config.label}: {config.hardware.text}"
        ax.plot([p[0] for p in points], [p[1] for p in points], color=color, alpha=0.35,
                linewidth=1)  # in load order
        held = [p for p in points if p[2]]
        missed = [p for p in points if not p[2]]
        ax.scatter([p[0] for p in held], [p[1] for p in held], color=color, s=36,
                   label=label, zorder=3)
        ax.scatter([p[0] for p in missed], [p[1] for p in missed], facecolors="none",
                   edgecolors=color, s=36, zorder=3)
        everything.extend(points)
        capacity = figures.held.point if figures.held else None
        at = [p for p, (q, ok) in zip(points, _placed(figures), strict=True)
              if ok and capacity is not None and q.load == capacity.load]
        if at and figures.held is not None:
            ax.annotate(f"max {figures.held.text()}", (at[0][0], at[0][1]),
                        textcoords="offset points", xytext=(6, -12), fontsize=7, color=color)
    front = pareto_front(everything)
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="black", linestyle="--",
                linewidth=1, zorder=2, label="Pareto front (SLOs held)")
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=130, facecolors="none",
                   edgecolors="black", linewidths=1.2, zorder=4)
    slo = next((f.decode_slo for f in group if f.decode_slo is not None), None)
    if slo is not None:
        ax.axhline(slo, color="red", linestyle=":", linewidth=1.2,
                   label=f"SLO: decode >= {slo:g} tok/s per user")
    if any(not p[2] for p in everything):
        ax.scatter([], [], facecolors="none", edgecolors="grey", s=36,
                   label="hollow: an SLO missed at that load")
    ax.set_xlabel("output tokens per dollar (millions)" if prices
                  else "output tok/s per GPU (per host without GPUs)")
    ax.set_ylabel("per-user decode speed (tok/s)")
    ax.set_title(f"{model}, {test}: configurations", fontsize=10)
    ax.set_xlim(0, max(p[0] for p in everything) * 1.12 or 1.0)  # room for the labels
    top = max(max(p[1] for p in everything), slo or 0.0)
    ax.set_ylim(0, top * 1.08 or 1.0)  # no point (nor the SLO line) on the frame
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

"""Charts for the report: the telemetry timeline of a measured window, as a PNG.

matplotlib is optional (not a dependency): without it no chart is drawn and the report says
nothing of one.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from pytest_llmperf.results.resources import Resources

__all__ = ["write_timeline_png"]


def write_timeline_png(resources: Resources, path: Path) -> Path | None:
    """GPU util/memory/power and server CPU/RSS over the window, as a PNG at ``path``; None
    when matplotlib is not installed (it is not a dependency) or nothing was sampled."""
    try:  # through importlib: mypy must not need matplotlib's stubs either
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")  # no display on test machines
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return None
    timeline = resources.timeline
    if timeline is None:
        return None
    t = timeline.t_s
    panels: list[tuple[str, list[tuple[str, tuple[float | None, ...]]]]] = []
    gpus = timeline.gpus
    for key, title in (("util_pct", "GPU util %"), ("memory_used_mib", "GPU memory MiB"),
                       ("power_w", "GPU power W")):
        series = [(f"GPU {i}", getattr(gpu, key)) for i, gpu in enumerate(gpus)
                  if any(v is not None for v in getattr(gpu, key))]
        if series:
            panels.append((title, series))
    for values, title in ((timeline.server_cpu_pct, "server CPU %\n(100 = 1 core)"),
                          (timeline.server_rss_mib, "server RSS MiB")):
        if any(v is not None for v in values):
            panels.append((title, [("server", values)]))
    if not t or not panels:
        return None
    figure, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                                figsize=(8, 1.8 * len(panels)))
    for ax, (title, series) in zip(axes[:, 0], panels, strict=True):
        for label, values in series:
            ax.plot(t, [float("nan") if v is None else v for v in values], label=label)
        ax.set_ylabel(title, fontsize=8)
        peak = max((v for _, values in series for v in values if v is not None), default=0)
        # From zero: 99 % vs 100 % must not look like a swing; headroom keeps the line off the
        # frame.
        ax.set_ylim(bottom=0, top=peak * 1.1 if peak > 0 else None)
        if "util" in title:
            ax.set_ylim(top=105)
        if "CPU" in title:  # against every core the machine has: a busy server sits below it
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
            ax.set_ylim(top=max(100.0 * cores, peak) * 1.05)
        totals = [g.memory_total_mib or 0 for g in resources.gpus]
        if "GPU memory" in title and max(totals, default=0) > 0:
            ax.set_ylim(top=max(totals) * 1.02)  # used against the card's total
        if len(series) > 1 or len(gpus) > 1:  # name the GPUs even when one is missing
            ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("seconds into the measured window")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)  # in-process engines launch nothing there
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

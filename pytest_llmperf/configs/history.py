"""History: the runs saved under one name (``--llmperf-save a6000x2`` across commits or dates),
each configuration's headline figures run by run, and a trend chart, so that a team sees drift
and not only the last step.

``python -m pytest_llmperf configs .llmperf/*_a6000x2.json .llmperf/*_h100.json`` compares the
newest run of each name and shows each name's history beside it (documents of one label are
its history, in the order they were created)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.configs.configuration import split_runs
from pytest_llmperf.configs.figures import TestFigures, figures_of
from pytest_llmperf.store.run_document import RunDocument

__all__ = ["HISTORY_HEADERS", "History", "RunFigures", "history_of", "newest_of_each",
           "write_trend_png"]

HISTORY_HEADERS = ("run", "created (UTC)", "git commit", "engine", "capacity", "output tok/s",
                   "tok/s per user", "TTFT p95 ms")


@dataclass(frozen=True)
class RunFigures:
    """One saved run's headline figures in one test."""

    created: str
    commit: str
    source: str  # the file it came from (or its position)
    figures: TestFigures


@dataclass(frozen=True)
class History:
    """One label's runs, oldest first, per (model, test)."""

    label: str
    series: tuple[tuple[str, str, tuple[RunFigures, ...]], ...]  # (model, test, runs)
    chart: Path | None = None

    def rows(self) -> list[list[str]]:
        rows = []
        for model, test, runs in self.series:
            for number, run in enumerate(runs, 1):
                held = run.figures.held
                point = held.point if held else None
                rows.append([
                    f"{model} {test.split('::')[-1]} #{number}", run.created, run.commit,
                    run.figures.run.config.served.engine,
                    held.text() if held else run.figures.reason or "not measured",
                    _number(point.output_token_throughput if point else None),
                    _number(point.decode_tokens_per_s_mean if point else None),
                    _number(point.ttft_ms_p95 if point else None, 0)])
        return rows


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def newest_of_each(documents: Sequence[tuple[str, RunDocument]],
                   sources: Sequence[str]) -> tuple[list[tuple[str, RunDocument]], list[str]]:
    """The newest document of each label (and its source), in the order labels first came."""
    newest: dict[str, tuple[int, RunDocument]] = {}
    for index, (label, document) in enumerate(documents):
        kept = newest.get(label)
        if kept is None or document.created >= kept[1].created:
            newest[label] = (index, document)
    chosen = sorted(newest.items(), key=lambda item: min(
        i for i, (label, _d) in enumerate(documents) if label == item[0]))
    return ([(label, document) for label, (_i, document) in chosen],
            [sources[index] for _label, (index, _d) in chosen])


def history_of(documents: Sequence[tuple[str, RunDocument]], sources: Sequence[str], *,
               chart_dir: Path | None = None) -> list[History]:
    """The history of every label with more than one document; trend charts in ``chart_dir``."""
    by_label: dict[str, list[tuple[RunDocument, str]]] = {}
    for (label, document), source in zip(documents, sources, strict=True):
        by_label.setdefault(label, []).append((document, source))
    histories = []
    for label, runs in by_label.items():
        if len(runs) < 2:
            continue
        runs.sort(key=lambda run: run[0].created)
        series: dict[tuple[str, str], list[RunFigures]] = {}
        for document, source in runs:
            commit = str(document.fingerprint.get("git_commit", "-")).split(" ")[0]
            for config_run in split_runs([(label, document)], [source]):
                for figures in figures_of(config_run):
                    key = (config_run.model, figures.test)
                    series.setdefault(key, []).append(
                        RunFigures(document.created, commit, source, figures))
        entries = tuple((model, test, tuple(found)) for (model, test), found in series.items())
        chart = None
        if chart_dir is not None:
            chart = write_trend_png(label, entries, chart_dir / f"history-{_slug(label)}.png")
        histories.append(History(label, entries, chart))
    return histories


def write_trend_png(label: str, series: Sequence[tuple[str, str, Sequence[RunFigures]]],
                    path: Path) -> Path:
    """Capacity and output tok/s at the highest held load, run by run, one line per test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (capacity_axis, throughput_axis) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, constrained_layout=True)
    longest = max((len(runs) for _m, _t, runs in series), default=0)
    for model, test, runs in series:
        name = f"{model} {test.split('::')[-1]}"
        xs = list(range(1, len(runs) + 1))
        capacity = [run.figures.held.load if run.figures.held else None for run in runs]
        throughput = [run.figures.held.point.output_token_throughput
                      if run.figures.held and run.figures.held.point else None for run in runs]
        capacity_axis.plot(xs, [float("nan") if v is None else v for v in capacity],
                           marker="o", label=name)
        throughput_axis.plot(xs, [float("nan") if v is None else v for v in throughput],
                             marker="o", label=name)
    first = next((runs for _m, _t, runs in series if len(runs) == longest), ())
    ticks = [f"#{i} {run.created[:10]}\n{_tag(run)}" for i, run in enumerate(first, 1)]
    throughput_axis.set_xticks(range(1, len(ticks) + 1), ticks, fontsize=8)
    capacity_axis.set_ylabel("capacity (highest load held)")
    throughput_axis.set_ylabel("output tok/s at that load")
    capacity_axis.set_title(f"{label}: run by run")
    capacity_axis.set_ylim(bottom=0)
    throughput_axis.set_ylim(bottom=0)
    for axis in (capacity_axis, throughput_axis):
        axis.grid(alpha=0.3)
    capacity_axis.legend(fontsize=8, loc="lower left")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _tag(run: RunFigures) -> str:
    """What tells the run apart on the chart: its commit, else its engine and version."""
    commit = run.commit
    return commit[:10] if commit not in ("-", "unknown", "") else \
        run.figures.run.config.served.engine


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def history_terminal(histories: Sequence[History]) -> str:
    from tabulate import tabulate

    parts = []
    for history in histories:
        parts += [f"history of {history.label} (oldest first; the comparison above uses the "
                  "newest)", tabulate(history.rows(), headers=HISTORY_HEADERS,
                                       tablefmt="simple", disable_numparse=True), ""]
        if history.chart is not None:
            parts += [f"chart: {history.chart}", ""]
    return "\n".join(parts)


def history_markdown(histories: Sequence[History], *, relative_to: Path | None = None,
                     heading: str = "#") -> str:
    import os

    from tabulate import tabulate

    lines: list[str] = []
    for history in histories:
        lines += [f"{heading}# History of {history.label}", "",
                  "Oldest first; the comparison above uses the newest run.", "",
                  tabulate(history.rows(), headers=HISTORY_HEADERS, tablefmt="github",
                           disable_numparse=True), ""]
        if history.chart is not None:
            link = history.chart
            if relative_to is not None:
                link = Path(os.path.relpath(history.chart, relative_to))
            lines += [f"![{history.label}: run by run]({link.as_posix()})", ""]
    return "\n".join(lines)

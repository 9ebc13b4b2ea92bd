"""The comparison as a terminal table and as markdown: per model and per test, one row per
configuration, then the recommendation, what was not measured and why, and the chart."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from pytest_llmperf.configs.compare import ModelComparison
from pytest_llmperf.configs.figures import TestFigures
from pytest_llmperf.configs.prices import Prices, cost_per_million
from pytest_llmperf.results.served import ServedInfo

__all__ = ["HEADERS", "engine_text", "render_markdown", "render_terminal", "rows_of"]

HEADERS = ("configuration", "hardware", "engine", "TP, quant", "capacity", "how sure",
           "output tok/s", "tok/s per user", "TTFT p95 ms", "GPU mem peak GiB", "J/token",
           "$/h", "$/M output tok")


def engine_text(served: ServedInfo) -> str:
    """``xllamacpp 2026.10.11549 --threads 1``: the engine and the launch arguments given."""
    return " ".join((served.engine, *served.engine_args))


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _sure(figures: TestFigures) -> str:
    held = figures.held
    if held is None:
        return figures.reason or "-"
    basis = held.basis
    # "max 9 users: 9 users passed 2 of 2, ..." says the capacity twice: keep the evidence.
    if held.source == "capacity search" and basis.startswith("max ") and ": " in basis:
        basis = basis.split(": ", 1)[1]
    return basis


def rows_of(group: Sequence[TestFigures], prices: Prices) -> list[list[str]]:
    rows = []
    for figures in group:
        config = figures.run.config
        held = figures.held
        point = held.point if held else None
        hourly = prices.hourly(config) if prices else None
        memory = figures.gpu_memory_peak_mib
        rows.append([
            config.label, config.hardware.text, engine_text(config.served), config.parallel_text,
            held.text() if held else figures.outcome or "not measured", _sure(figures),
            _number(point.output_token_throughput if point else None),
            _number(point.decode_tokens_per_s_mean if point else None),
            _number(point.ttft_ms_p95 if point else None, 0),
            _number(None if memory is None else memory / 1024, 1),
            _number(figures.energy_j_per_token, 3),
            _number(hourly, 2),
            _number(cost_per_million(hourly, figures.throughput), 2)])
    return rows


def render_terminal(comparisons: Sequence[ModelComparison], prices: Prices) -> str:
    parts = []
    for comparison in comparisons:
        for test, group in comparison.tests:
            parts.append(f"{comparison.model}: {test}")
            parts.append(tabulate(rows_of(group, prices), headers=HEADERS, tablefmt="simple",
                                  disable_numparse=True))
            parts.append("")
        for recommendation in comparison.recommendations:
            parts.extend(line.replace("**", "") for line in recommendation.lines)
            parts.append("")
        for figures in comparison.not_measured:
            parts.append(f"not measured: {figures.run.config.label} "
                         f"({figures.run.config.hardware.text}): {figures.reason}")
        if comparison.chart is not None:
            parts.append(f"chart: {comparison.chart}")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def render_markdown(comparisons: Sequence[ModelComparison], prices: Prices, *,
                    relative_to: Path | None = None, heading: str = "#") -> str:
    """Markdown of the comparison; chart links are relative to ``relative_to`` (the markdown
    file's folder) when given."""
    lines = [f"{heading} Which configuration to deploy", ""]
    if not comparisons:
        lines.append("No results to compare.")
    for comparison in comparisons:
        lines += [f"{heading}# {comparison.model}", ""]
        for recommendation in comparison.recommendations:
            lines += [f"> {line}  " for line in recommendation.lines]
            lines.append("")
        for test, group in comparison.tests:
            lines += [f"**{test}**", ""]
            lines.append(tabulate([[_cell(c) for c in row] for row in rows_of(group, prices)],
                                  headers=HEADERS, tablefmt="github", disable_numparse=True))
            lines.append("")
        not_measured = comparison.not_measured
        if not_measured:
            lines += ["Not measured:", ""]
            lines += [f"- **{f.run.config.label}** ({f.run.config.hardware.text}): "
                      f"{_cell(f.reason or '')}" for f in not_measured]
            lines.append("")
        if comparison.chart is not None:
            link = comparison.chart
            if relative_to is not None:
                link = Path(os.path.relpath(comparison.chart, relative_to))
            lines += [f"![{comparison.model}: configurations]({link.as_posix()})", ""]
    if prices:
        lines.append("Prices: " + ", ".join(f"{name} ${price:g}/h"
                                            for name, price in prices.by_name.items()) + ".")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

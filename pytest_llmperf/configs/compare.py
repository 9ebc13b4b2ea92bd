"""The comparison: per model and per test, every configuration's figures side by side, the
recommendation, and the Pareto chart."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.configs.chart import write_pareto_png
from pytest_llmperf.configs.configuration import ConfigRun, split_runs
from pytest_llmperf.configs.figures import TestFigures, figures_of
from pytest_llmperf.configs.prices import Prices
from pytest_llmperf.configs.recommend import Recommendation, recommend
from pytest_llmperf.store.run_document import RunDocument

__all__ = ["ModelComparison", "compare_configs", "compare_runs"]


@dataclass(frozen=True)
class ModelComparison:
    model: str
    tests: tuple[tuple[str, tuple[TestFigures, ...]], ...]  # (test key, one per configuration)
    recommendations: tuple[Recommendation, ...]
    chart: Path | None = None
    chart_test: str | None = None  # the test whose loads the chart shows

    @property
    def not_measured(self) -> list[TestFigures]:
        """Configurations whose tests measured nothing (skipped, failed to start), once each."""
        seen: dict[str, TestFigures] = {}
        for _test, group in self.tests:
            for figures in group:
                if figures.held is None and figures.reason:
                    seen.setdefault(figures.run.config.label, figures)
        return list(seen.values())


def compare_configs(documents: Sequence[tuple[str, RunDocument]], *,
                    prices: Prices | None = None, users: int | None = None,
                    rate: float | None = None, chart_dir: Path | None = None,
                    sources: Sequence[str] | None = None) -> list[ModelComparison]:
    """The comparison of ``documents`` ((label, document) pairs; a multi-host document splits
    into one configuration per host); charts are written to ``chart_dir`` when given."""
    return compare_runs(split_runs(documents, sources), prices=prices or Prices({}),
                        users=users, rate=rate, chart_dir=chart_dir)


def compare_runs(runs: Sequence[ConfigRun], *, prices: Prices, users: int | None = None,
                 rate: float | None = None,
                 chart_dir: Path | None = None) -> list[ModelComparison]:
    models: dict[str, dict[str, list[TestFigures]]] = {}
    for run in runs:
        for figures in figures_of(run):
            models.setdefault(run.model, {}).setdefault(figures.test, []).append(figures)
    out = []
    for model, tests in models.items():
        ordered = sorted(tests.items(), key=lambda item: _test_order(item[1]))
        recommendations = [r for _test, group in ordered
                           if (r := recommend(group, prices, users=users, rate=rate))]
        chart = chart_test = None
        drawable = [(test, group) for test, group in ordered
                    if sum(bool(f.curve) for f in group) >= 1]
        if chart_dir is not None and drawable:
            chart_test, group = drawable[0]
            name = chart_test.split("::")[-1]
            path = chart_dir / f"configs-{_slug(model)}-{_slug(name)}.png"
            chart = write_pareto_png(model, name, group, prices, path)
        out.append(ModelComparison(model, tuple((t, tuple(g)) for t, g in ordered),
                                   tuple(recommendations), chart, chart_test))
    return out


def _test_order(group: Sequence[TestFigures]) -> tuple[int, str]:
    """Capacity searches first (users, then rate), then sweeps, then windows, then the rest."""
    sources = {f.held.source + ":" + f.held.dimension for f in group if f.held is not None}
    rank = min((_ORDER.index(s) for s in sources if s in _ORDER), default=len(_ORDER))
    return rank, group[0].test


_ORDER = ("capacity search:users", "capacity search:rate", "sweep:users", "sweep:rate",
          "windows:users", "windows:rate")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"

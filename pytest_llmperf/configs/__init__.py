"""Which configuration to deploy: several runs of the same suite (machines, engines,
quantisations), side by side per model and test, the cheapest configuration that holds every SLO
at a target load, and a Pareto chart per model (``python -m pytest_llmperf configs``).

- :mod:`.configuration`: a run (or one host of a multi-host run) as configurations;
- :mod:`.figures`: one configuration's figures in one test, at the highest load that held;
- :mod:`.prices`: ``--price`` values, dollars an hour and per million output tokens;
- :mod:`.recommend`: the recommendation; :mod:`.compare`: all of it per model;
- :mod:`.chart`: the Pareto PNG; :mod:`.render`: terminal and markdown; :mod:`.html`: one
  self-contained HTML file; :mod:`.cli`: the sub-command.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pytest_llmperf.configs.compare import ModelComparison, compare_configs
from pytest_llmperf.configs.prices import PriceError, Prices, parse_price
from pytest_llmperf.configs.render import render_markdown
from pytest_llmperf.store.run_document import RunDocument

__all__ = ["ModelComparison", "PriceError", "Prices", "compare_configs", "configs_markdown",
           "configs_sections", "parse_price"]


def configs_markdown(documents: Sequence[tuple[str, RunDocument]], *,
                     prices: Prices | Iterable[str] = (), users: int | None = None,
                     rate: float | None = None, chart_dir: Path | None = None,
                     relative_to: Path | None = None, heading: str = "#") -> str:
    """The comparison of in-memory ``documents`` ((label, document) pairs) as markdown: what
    ``python -m pytest_llmperf configs --markdown`` writes.  A multi-host document is one
    configuration per host (e.g. the plugin's own document at the end of such a session).
    ``prices``: a :class:`Prices` or ``--price`` texts; charts go to ``chart_dir`` (none when
    None), linked relative to ``relative_to``."""
    chosen = prices if isinstance(prices, Prices) else Prices.parse(prices)
    comparisons = compare_configs(documents, prices=chosen, users=users, rate=rate,
                                  chart_dir=chart_dir)
    return render_markdown(comparisons, chosen, relative_to=relative_to, heading=heading)


def configs_sections(documents: Sequence[tuple[str, RunDocument]], *,
                     chart_dir: Path | None = None, relative_to: Path | None = None,
                     heading: str = "##") -> tuple[str, str]:
    """The comparison of ``documents`` as a markdown section and as an HTML fragment (its
    heading one level below the page's title), the charts drawn once: what the plugin's
    reports end with after a session over several hosts."""
    from pytest_llmperf.configs.html import comparison_html

    prices = Prices.parse(())
    comparisons = compare_configs(documents, prices=prices, chart_dir=chart_dir)
    return (render_markdown(comparisons, prices, relative_to=relative_to, heading=heading),
            comparison_html(comparisons, prices, level=len(heading)))

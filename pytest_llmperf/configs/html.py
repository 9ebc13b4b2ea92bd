"""The comparison as one self-contained HTML file: inline CSS, the charts embedded as base64
PNG, no reference to anything outside the file."""

from __future__ import annotations

import html
from collections.abc import Sequence

from pytest_llmperf.configs.compare import ModelComparison
from pytest_llmperf.configs.prices import Prices
from pytest_llmperf.configs.render import HEADERS, rows_of
from pytest_llmperf.report.html import html_page, png_img
from pytest_llmperf.report.markdown_html import numeric_columns

__all__ = ["comparison_html", "render_html"]

TITLE = "Which configuration to deploy"


def _text(line: str) -> str:
    """A line of the recommendation: escaped, its **bold** kept."""
    parts = html.escape(line).split("**")
    return "".join(f"<strong>{part}</strong>" if i % 2 else part for i, part in enumerate(parts))


def render_html(comparisons: Sequence[ModelComparison], prices: Prices) -> str:
    """The whole page ``python -m pytest_llmperf configs --html`` writes."""
    return html_page(TITLE, comparison_html(comparisons, prices))


def comparison_html(comparisons: Sequence[ModelComparison], prices: Prices,
                    level: int = 1) -> str:
    """The comparison as an HTML fragment, its title an ``<h{level}>`` (the plugin's HTML
    report holds it as a section, level 2)."""
    h1, h2, h3 = (f"h{min(6, level + n)}" for n in range(3))
    body = [f"<{h1}>{TITLE}</{h1}>"]
    if not comparisons:
        body.append("<p>No results to compare.</p>")
    for comparison in comparisons:
        body.append(f"<{h2}>{html.escape(comparison.model)}</{h2}>")
        for recommendation in comparison.recommendations:
            body.append("<blockquote>" + "".join(f"<p>{_text(line)}</p>"
                                                 for line in recommendation.lines)
                        + "</blockquote>")
        for test, group in comparison.tests:
            body.append(f'<{h3}>{html.escape(test)}</{h3}><div class="table"><table><thead><tr>'
                        + "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
                        + "</tr></thead><tbody>")
            rows = rows_of(group, prices)
            right = numeric_columns(rows)
            for row in rows:
                body.append("<tr>" + "".join(
                    f'<td class="right">{html.escape(c)}</td>' if n in right
                    else f"<td>{html.escape(c)}</td>" for n, c in enumerate(row)) + "</tr>")
            body.append("</tbody></table></div>")
        not_measured = comparison.not_measured
        if not_measured:
            body.append("<p>Not measured:</p><ul>" + "".join(
                f"<li><strong>{html.escape(f.run.config.label)}</strong> "
                f"({html.escape(f.run.config.hardware.text)}): {html.escape(f.reason or '')}"
                "</li>" for f in not_measured) + "</ul>")
        if comparison.chart is not None:
            body.append(png_img(comparison.chart, f"{comparison.model}: configurations"))
    if prices:
        body.append("<p>Prices: " + html.escape(", ".join(
            f"{name} ${price:g}/h" for name, price in prices.by_name.items())) + ".</p>")
    return "\n".join(body)

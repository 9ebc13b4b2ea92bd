"""The comparison as one self-contained HTML file: inline CSS, the charts embedded as base64
PNG, no reference to anything outside the file."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from pytest_llmperf.configs.compare import ModelComparison
from pytest_llmperf.configs.prices import Prices
from pytest_llmperf.configs.render import HEADERS, rows_of

__all__ = ["render_html"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}blockquote{border-left:4px solid #2a7;margin:0;padding:.2em 1em}
img{max-width:100%}"""


def _text(line: str) -> str:
    """A line of the recommendation: escaped, its **bold** kept."""
    parts = html.escape(line).split("**")
    return "".join(f"<strong>{part}</strong>" if i % 2 else part for i, part in enumerate(parts))


def render_html(comparisons: Sequence[ModelComparison], prices: Prices) -> str:
    body = ["<h1>Which configuration to deploy</h1>"]
    if not comparisons:
        body.append("<p>No results to compare.</p>")
    for comparison in comparisons:
        body.append(f"<h2>{html.escape(comparison.model)}</h2>")
        for recommendation in comparison.recommendations:
            body.append("<blockquote>" + "".join(f"<p>{_text(line)}</p>"
                                                 for line in recommendation.lines)
                        + "</blockquote>")
        for test, group in comparison.tests:
            body.append(f"<h3>{html.escape(test)}</h3><table><tr>"
                        + "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS) + "</tr>")
            for row in rows_of(group, prices):
                body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row)
                            + "</tr>")
            body.append("</table>")
        not_measured = comparison.not_measured
        if not_measured:
            body.append("<p>Not measured:</p><ul>" + "".join(
                f"<li><strong>{html.escape(f.run.config.label)}</strong> "
                f"({html.escape(f.run.config.hardware.text)}): {html.escape(f.reason or '')}"
                "</li>" for f in not_measured) + "</ul>")
        if comparison.chart is not None and comparison.chart.is_file():
            data = base64.b64encode(comparison.chart.read_bytes()).decode("ascii")
            body.append(f'<img alt="{html.escape(comparison.model)}: configurations" '
                        f'src="data:image/png;base64,{data}">')
    if prices:
        body.append("<p>Prices: " + html.escape(", ".join(
            f"{name} ${price:g}/h" for name, price in prices.by_name.items())) + ".</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Which configuration to deploy</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

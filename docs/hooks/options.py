"""MkDocs hook: the options reference, rendered from the option table itself.

``pytest_llmperf.settings.options.OPTIONS`` is the one place an option's spellings, default,
help text and groups are written; ``docs/options.md`` carries the marker below and this hook
puts the rendered tables there at build time, so the reference cannot drift from the code.
tests/unit/test_docs.py calls :func:`render_options` directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

MARKER = "<!-- llmperf-options -->"

# A heading for the groups we know; a group added to the table later is still rendered, under
# its own name, so the reference follows the table whatever it holds.
GROUP_TITLES = {
    "matrix": "Matrix: which engines and models",
    "server": "Server: launching and attaching",
    "load": "Load: what each measured window sends",
    "search": "Search: capacity searches",
    "checks": "Checks: what results are held to",
    "store": "Store: saved runs and the baseline",
    "report": "Report: what is written",
}
UNGROUPED = "other"


def spellings(option: Any) -> list[str]:
    """Every command-line spelling of an option: its flag, then any alias the table gives it
    (whatever the field is called: every field whose value is a flag or a tuple of flags)."""
    found = [option.flag]
    for field in dataclasses.fields(option):
        value = getattr(option, field.name)
        values: Iterable[Any] = value if isinstance(value, (tuple, list)) else (value,)
        for item in values:
            if isinstance(item, str) and item.startswith("--") and " " not in item \
                    and item not in found:
                found.append(item)
    return found


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(text.replace("%%", "%").replace("|", "\\|").split())


def _row(option: Any, group: str) -> str:
    flags = "<br>".join(f"`{flag}`" for flag in spellings(option))
    default = f"`{_cell(option.default)}`" if option.default is not None else "-"
    also = [g for g in option.groups if g != group]
    note = f" (also under {', '.join(also)})" if also else ""
    return (f"| {flags} | `{option.env}`<br>`{option.ini}` | {default} | "
            f"{_cell(option.help)}{note} |")


def render_options(options: Sequence[Any] | None = None) -> str:
    """Markdown tables of every option, one section per group, in the table's order."""
    if options is None:
        from pytest_llmperf.settings.options import OPTIONS

        options = OPTIONS
    groups: list[str] = [g for g in GROUP_TITLES if any(g in o.groups for o in options)]
    for option in options:
        for group in option.groups or (UNGROUPED,):
            if group not in groups:
                groups.append(group)
    parts: list[str] = []
    for group in groups:
        members = [o for o in options if group in (o.groups or (UNGROUPED,))]
        parts += [f"## {GROUP_TITLES.get(group, group.capitalize())}", "",
                  "| option | environment, ini | default | what it does |",
                  "|---|---|---|---|"]
        parts += [_row(o, group) for o in members]
        parts.append("")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_options())

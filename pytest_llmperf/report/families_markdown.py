"""The families of a server's own metrics that moved over a window, one table per URL."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from pytest_llmperf.report.cells import count_cell
from pytest_llmperf.results.server_families import FamilyWindow, ScrapedFamilies

__all__ = ["families_markdown"]

# A table of hundreds of rows is read by nobody: the rest is in the result store.
MOST_ROWS = 40


def families_markdown(scraped: Sequence[ScrapedFamilies]) -> list[str]:
    """Per metrics URL, the families that moved over the window (a counter or histogram that
    counted something, a gauge that was not zero throughout) with their figures; each of
    them, moved or not, can be held to an SLO as ``server[NAME].STAT``."""
    lines: list[str] = []
    for one in scraped:
        if not one.families:
            continue
        moved = {name: family for name, family in sorted(one.families.items())
                 if _moved(family)}
        lines.append(f"Server metrics at {one.url}: {len(moved)} of {len(one.families)} "
                     f"families moved over the window ({one.seconds:.1f} s between the "
                     "scrapes); any of them is an SLO as `server[NAME].STAT` (a counter "
                     "with or without its `_total`).")
        lines.append("")
        if not moved:
            continue
        rows = [[f"`{name}`", family.kind,
                 ", ".join(f"{stat} {count_cell(value)}"
                           for stat, value in family.summary(one.seconds).items())]
                for name, family in list(moved.items())[:MOST_ROWS]]
        lines += [tabulate(rows, headers=["family", "kind", "over the window"],
                           tablefmt="github", disable_numparse=True), ""]
        if len(moved) > MOST_ROWS:
            lines += [f"... and {len(moved) - MOST_ROWS} more in the result store "
                      "(--llmperf-json).", ""]
    return lines


def _moved(family: FamilyWindow) -> bool:
    if family.kind in ("histogram", "summary"):
        return bool(family.count)
    return bool(family.delta) or bool(family.peak) or bool(family.low)



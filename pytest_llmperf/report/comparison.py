"""The comparison with a baseline as tables: one per test in the markdown report, and one for the
terminal that shows what changed (the rows with no significant change are only counted)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from pytest_llmperf.report.cells import cell

__all__ = ["comparison_markdown", "comparison_terminal"]

_UNCHANGED = "no significant change"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} %"


def _interval(row: Mapping[str, Any]) -> str:
    if row["low"] is None or row["high"] is None:
        return "-"
    return f"[{row['low'] * 100:+.1f}, {row['high'] * 100:+.1f}] %"


def _value(row: Mapping[str, Any], key: str) -> str:
    return cell(row[key]) + (f" {row['unit']}" if row["unit"] else "")


def _verdict(row: Mapping[str, Any]) -> str:
    text = str(row["verdict"])
    if row["failed"]:
        text = f"**{text}: FAIL**"
    elif text == "regressed":
        text = f"**{text}**"
    if row.get("needed"):
        text += f" (about {row['needed']} requests per window would settle it)"
    if row.get("note"):
        text += f" ({row['note']})"
    return text


def _gate(row: Mapping[str, Any]) -> str:
    if row["gate"]:
        return f"{row['gate']} ({row['gate_origin']})"
    return f"table: +-{row['tolerance'] * 100:.0f} %"


def comparison_markdown(comparison: Mapping[str, Any]) -> list[str]:
    """The section under a test: what both runs ran, then one row per metric."""
    lines = [f"### Against the baseline `{comparison['baseline']}`", ""]
    if comparison.get("missing"):
        return [*lines, f"Not compared: {comparison['missing']}.", ""]
    lines += [
        f"Baseline: {comparison['baseline_engine']}, {comparison['baseline_windows']} "
        f"window(s). This run: {comparison['current_engine']}, "
        f"{comparison['current_windows']} window(s). Change = this run / baseline - 1, with "
        "its 95 % confidence interval; a row's verdict holds that interval against its "
        "tolerance (README, \"Comparing with a baseline\").", ""]
    if comparison.get("hardware_note"):
        lines += [f"**Compared across hardware: {comparison['hardware_note']}.**", ""]
    if comparison.get("cross_check"):
        lines += [f"**Cross-check: {comparison['cross_check']}.**", ""]
    rows = [[row["metric"], _value(row, "baseline"), _value(row, "current"),
             _percent(row["change"]), _interval(row), _verdict(row), _gate(row)]
            for row in comparison["rows"]]
    headers = ["metric", "baseline", "this run", "change", "95 % interval", "verdict",
               "tolerance"]
    return [*lines, tabulate(rows, headers=headers, tablefmt="github"), ""]


def comparison_terminal(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """Rows that changed, were gated, or could not be judged, for every compared test."""
    compared = [entry for entry in entries if entry.get("comparison")]
    if not compared:
        return None
    rows, quiet, missing, notes = [], 0, [], []
    for entry in compared:
        comparison = entry["comparison"]
        test = entry["nodeid"].split("::")[-1]
        if comparison.get("missing"):
            missing.append(test)
        if comparison.get("cross_check"):
            notes.append(f"{test}: {comparison['cross_check']}")
        for row in comparison["rows"]:
            if row["verdict"] == _UNCHANGED and not row["gate"]:
                quiet += 1
                continue
            verdict = row["verdict"] + (": FAIL" if row["failed"] else "")
            if row.get("needed"):
                verdict += f" (~{row['needed']} requests)"
            elif row["low"] is None:
                verdict += " (needs more windows)"
            elif row["verdict"] == "inconclusive" and row.get("note"):
                verdict += " (needs more runs)"
            rows.append([test, row["metric"], cell(row["baseline"]), cell(row["current"]),
                         _percent(row["change"]), _interval(row), verdict,
                         row["gate"] or ""])
    lines = [f"baseline: {compared[0]['comparison']['baseline']}"]
    hardware = compared[0]["comparison"].get("hardware_note")
    if hardware:
        lines.append(f"compared across hardware: {hardware}")
    if rows:
        lines.append(tabulate(rows, headers=["test", "metric", "baseline", "this run", "change",
                                             "95 % interval", "verdict", "gate"],
                              tablefmt="simple"))
    lines.append(f"{quiet} more rows show no significant change (every row is in the markdown "
                 "report and the junit properties)")
    if missing:
        lines.append(f"not in the baseline: {', '.join(missing)}")
    lines += [f"cross-check: {note}" for note in notes]
    return "\n".join(lines)

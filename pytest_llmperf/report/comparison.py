"""The comparison with a baseline as tables: one per test in the markdown report, and one for the
terminal that shows what changed (the rows with no significant change are only counted)."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from pytest_llmperf.report.cells import cell
from pytest_llmperf.results.comparison import Comparison, Row
from pytest_llmperf.results.recorded import RecordedWindow
from pytest_llmperf.results.statistics import NO_CHANGE, REGRESSED

__all__ = ["comparison_markdown", "comparison_terminal"]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} %"


def _interval(row: Row) -> str:
    if row.low is None or row.high is None:
        return "-"
    return f"[{row.low * 100:+.1f}, {row.high * 100:+.1f}] %"


def _value(row: Row, value: float) -> str:
    return cell(value) + (f" {row.unit}" if row.unit else "")


def _verdict(row: Row) -> str:
    text = row.verdict
    if row.failed:
        text = f"**{text}: FAIL**"
    elif text == REGRESSED:
        text = f"**{text}**"
    if row.needed:
        text += f" (about {row.needed} requests per window would settle it)"
    if row.note:
        text += f" ({row.note})"
    return text


def _gate(row: Row) -> str:
    if row.gate is not None:
        return f"{row.gate.text} ({row.gate.origin})"
    return f"table: +-{row.tolerance * 100:.0f} %"


def comparison_markdown(comparison: Comparison) -> list[str]:
    """The section under a test: what both runs ran, then one row per metric."""
    lines = [f"### Against the baseline `{comparison.baseline}`", ""]
    if comparison.missing:
        return [*lines, f"Not compared: {comparison.missing}.", ""]
    lines += [
        f"Baseline: {comparison.baseline_engine}, {comparison.baseline_windows} window(s). "
        f"This run: {comparison.current_engine}, {comparison.current_windows} window(s). "
        "Change = this run / baseline - 1, with its 95 % confidence interval; a row's verdict "
        "holds that interval against its tolerance (docs/baselines.md).", ""]
    if comparison.hardware_note:
        lines += [f"**Compared across hardware: {comparison.hardware_note}.**", ""]
    if comparison.cross_check:
        lines += [f"**Cross-check: {comparison.cross_check}.**", ""]
    rows = [[row.metric, _value(row, row.baseline), _value(row, row.current),
             _percent(row.change), _interval(row), _verdict(row), _gate(row)]
            for row in comparison.rows]
    headers = ["metric", "baseline", "this run", "change", "95 % interval", "verdict",
               "tolerance"]
    return [*lines, tabulate(rows, headers=headers, tablefmt="github"), ""]


def comparison_terminal(windows: Sequence[RecordedWindow]) -> str | None:
    """Rows that changed, were gated, or could not be judged, for every compared test."""
    compared = [(w.provenance.test, w.comparison) for w in windows if w.comparison is not None]
    if not compared:
        return None
    rows, quiet, missing, notes = [], 0, [], []
    for test, comparison in compared:
        if comparison.missing:
            missing.append(test)
        if comparison.cross_check:
            notes.append(f"{test}: {comparison.cross_check}")
        for row in comparison.rows:
            if row.verdict == NO_CHANGE and row.gate is None:
                quiet += 1
                continue
            verdict = row.verdict + (": FAIL" if row.failed else "")
            if row.needed:
                verdict += f" (~{row.needed} requests)"
            elif row.low is None:
                verdict += " (needs more windows)"
            elif row.verdict == "inconclusive" and row.note:
                verdict += " (needs more runs)"
            rows.append([test, row.metric, cell(row.baseline), cell(row.current),
                         _percent(row.change), _interval(row), verdict,
                         row.gate.text if row.gate else ""])
    first = compared[0][1]
    lines = [f"baseline: {first.baseline}"]
    if first.hardware_note:
        lines.append(f"compared across hardware: {first.hardware_note}")
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

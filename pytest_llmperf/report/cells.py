"""Table cells shared by the markdown report and the terminal table."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_llmperf.results.slo import Verdict, format_number

__all__ = ["cell", "count_cell", "verdict_summary"]


def cell(value: float | None) -> str:
    return "-" if value is None else format_number(value)


def count_cell(value: float | None) -> str:
    """Whole numbers (token counts, peaks of request gauges) without a decimal point."""
    if value is not None and float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return cell(value)


def verdict_summary(verdicts: Sequence[Verdict]) -> str:
    if not verdicts:
        return "not checked"
    failed = sum(not v.passed for v in verdicts)
    skipped = sum(v.state == "skip" for v in verdicts)
    inconclusive = sum(v.state == "inconclusive" and v.passed for v in verdicts)
    text = f"{len(verdicts) - failed - skipped - inconclusive}/{len(verdicts)} pass"
    if inconclusive:
        text += f", {inconclusive} inconclusive"
    return text + (f", {skipped} skipped" if skipped else "")

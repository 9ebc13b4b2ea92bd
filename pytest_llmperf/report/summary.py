"""The report's first section: the answer.  One row per measured window (every test and load)
with the headline figures, its SLO verdicts (pass / FAIL / inconclusive), what missed and by
how much, and the marks that say its numbers cannot be fully trusted; then one line per
capacity search and per test that measured nothing.  Read in ten seconds on a CI page; the
details follow."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from pytest_llmperf.report.cells import cell
from pytest_llmperf.report.terminal import capacity_lines
from pytest_llmperf.results.recorded import RecordedSearch, RecordedWindow
from pytest_llmperf.results.slo import Verdict, format_number

__all__ = ["summary_section"]

HEADERS = ["test", "load", "reqs", "TTFT p95 ms", "TPOT p95 ms", "decode tok/s/user",
           "output tok/s", "errors", "goodput %", "SLOs", "missed", "marks"]


def summary_section(windows: Sequence[RecordedWindow],
                    searches: Sequence[RecordedSearch] = ()) -> list[str]:
    failed = sum(any(not v.passed for v in w.verdicts) for w in windows)
    undecided = sum(any(v.state == "inconclusive" for v in w.verdicts) for w in windows)
    marked = sum(bool(w.window.validity_marks or w.window.overload) for w in windows)
    counts = [f"{len(windows)} measured window{'' if len(windows) == 1 else 's'}",
              f"{failed} missed an SLO" if failed else "every SLO held",
              *([f"{undecided} with an inconclusive SLO"] if undecided else []),
              *([f"{marked} marked (numbers not fully trusted)"] if marked else [])]
    lines = ["## Summary", "", "; ".join(counts) + ".", ""]
    if windows:
        lines.append(tabulate([_row(w) for w in windows], headers=HEADERS, tablefmt="github",
                              disable_numparse=True))
        lines.append("")
    capacity = capacity_lines(searches)
    if capacity:
        lines += ["Capacity and cache:", "", *(f"- {line}" for line in capacity), ""]
    return lines


def _row(recorded: RecordedWindow) -> list[str]:
    window = recorded.window
    value = window.metrics.value
    marks = [*window.validity_marks, *(["overloaded"] if window.overload else [])]
    return [f"`{recorded.provenance.test}`", window.shape.label, str(window.requests),
            cell(value("ttft_ms", "p95")), cell(value("tpot_ms", "p95")),
            cell(value("decode_tokens_per_s", "mean")), cell(value("output_token_throughput")),
            cell(value("error_rate")), cell(recorded.goodput.get("goodput_pct")),
            _verdicts(recorded.verdicts),
            "; ".join(_missed(v) for v in recorded.verdicts if _counts_against(v)) or "-",
            ", ".join(marks) or "-"]


def _verdicts(verdicts: Sequence[Verdict]) -> str:
    if not verdicts:
        return "not checked"
    failed = sum(not v.passed for v in verdicts)
    undecided = sum(v.state == "inconclusive" and v.passed for v in verdicts)
    skipped = sum(v.state == "skip" for v in verdicts)
    held = len(verdicts) - failed - undecided - skipped
    parts = [f"**FAIL** {failed}" if failed else "", f"pass {held}" if held else "",
             f"inconclusive {undecided}" if undecided else "",
             f"skipped {skipped}" if skipped else ""]
    return ", ".join(part for part in parts if part)


def _counts_against(verdict: Verdict) -> bool:
    return not verdict.passed or verdict.state == "inconclusive"


def _missed(verdict: Verdict) -> str:
    """``tpot_ms.p95 785 ms (< 100, +685)``; ``ttft_ms.p95 inconclusive``."""
    if verdict.measured is None:
        return f"{verdict.check.key} not measured"
    if verdict.state == "inconclusive":
        return f"{verdict.check.key} inconclusive"
    unit = f" {verdict.unit}" if verdict.unit else ""
    by = abs(verdict.measured - verdict.check.limit)
    sign = "+" if verdict.check.operator in ("<", "<=") else "-"
    return (f"{verdict.check.key} {format_number(verdict.measured)}{unit} "
            f"({verdict.check.operator} {verdict.check.limit_text}, {sign}{format_number(by)})")

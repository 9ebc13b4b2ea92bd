"""The summary pytest prints at the end of the session."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from pytest_llmperf.report.cells import cell, verdict_summary
from pytest_llmperf.results.recorded import (
    RecordedCapacity,
    RecordedPrefixCache,
    RecordedSearch,
    RecordedWindow,
)
from pytest_llmperf.results.slo import Verdict
from pytest_llmperf.results.window import WindowResult

__all__ = ["cache_warning_lines", "capacity_lines", "inconclusive_lines",
           "render_terminal_table", "validity_lines"]


def render_terminal_table(windows: Sequence[RecordedWindow]) -> str:
    rows = []
    for recorded in windows:
        value = recorded.window.metrics.value
        rows.append([
            recorded.provenance.test, _load(recorded.window), recorded.window.requests,
            cell(value("ttft_ms", "p95")), cell(value("tpot_ms", "p95")),
            cell(value("decode_tokens_per_s", "mean")), cell(value("output_token_throughput")),
            cell(value("error_rate")), cell(recorded.goodput.get("goodput_pct")),
            verdict_summary(recorded.verdicts),
        ])
    # goodput %: the requests that met every per-request SLO of the test (results.goodput).
    headers = ["test", "load", "reqs", "TTFT p95 ms", "TPOT p95 ms", "decode tok/s/user",
               "output tok/s", "error rate", "goodput %", "SLO"]
    return tabulate(rows, headers=headers, tablefmt="simple")


def _load(window: WindowResult) -> str:
    """``4 users`` or ``2 req/s poisson``, and ``OVERLOADED`` when the queue grew."""
    label = window.shape.label
    prompts = window.prompts
    if prompts is not None and prompts.source == "random":  # the length is part of the load
        label += f", {prompts.details.get('input_tokens')} tok in"
    elif prompts is not None and prompts.source != "built-in":
        label += f", {prompts.source}"
    marks = "".join(f" {mark.upper()}" for mark in window.validity_marks)
    return label + (" OVERLOADED" if window.overload else "") + marks


def inconclusive_lines(windows: Sequence[RecordedWindow]) -> list[str]:
    """One line per test with inconclusive SLO verdicts (the value meets the SLO, the sample
    cannot say so): its first in full, and how many more of which SLOs, which the report
    lists (none for those --llmperf-inconclusive=pass counts as passed without a word)."""
    by_test: dict[str, list[Verdict]] = {}
    for recorded in windows:
        by_test.setdefault(recorded.provenance.test, []).extend(
            v for v in recorded.verdicts
            if v.state == "inconclusive" and v.inconclusive_policy != "pass")
    lines = []
    for test, verdicts in by_test.items():
        if not verdicts:
            continue
        first = verdicts[0]
        line = (f"{test}: {first.describe()} [{'passed' if first.passed else 'failed'}: "
                f"--llmperf-inconclusive={first.inconclusive_policy}]")
        if len(verdicts) > 1:
            keys = ", ".join(dict.fromkeys(v.check.key for v in verdicts))
            line += f"; {len(verdicts) - 1} more ({keys}) in the report"
        lines.append(line)
    return lines


def capacity_lines(searches: Sequence[RecordedSearch]) -> list[str]:
    """One line per capacity search (the test, its headline figure and how sure it is), and
    one per prefix-cache test."""
    lines = []
    for recorded in searches:
        test = recorded.provenance.test
        if isinstance(recorded, RecordedPrefixCache):
            lines.append(f"{test}: {recorded.gain.summary}")
        if not isinstance(recorded, RecordedCapacity):
            continue
        search = recorded.search
        goodput = (f", goodput {cell(search.goodput)} req/s"
                   if search.goodput is not None else "")
        boundary = f", {search.boundary} boundary" if search.boundary else ""
        broke = (f"; broke first: {search.broke_first[0].split(' -- ')[0]}"
                 if search.broke_first else "")
        against = ""
        if recorded.baseline is not None:
            against = "; against the baseline: " + (
                recorded.comparison.describe() if recorded.comparison is not None
                else str(recorded.not_compared))
        dropped = len(search.probes) - len(search.counted)
        discarded = f" ({dropped} discarded)" if dropped else ""
        lines.append(f"{test}: {search.summary}{goodput}{boundary}{broke} "
                     f"[{len(search.probes)} probes{discarded}, "
                     f"{round(search.elapsed_s, 1):g} s]{against}")
    return lines


def validity_lines(windows: Sequence[RecordedWindow]) -> list[str]:
    """One line per window whose numbers cannot be fully trusted: the mark and the limits its
    figures crossed (observe.health)."""
    return [f"{recorded.provenance.test} ({recorded.window.shape.label}): {mark}: "
            f"{', '.join(crossed)}"
            for recorded in windows
            for mark, crossed in recorded.window.validity_marks.items()]


def cache_warning_lines(windows: Sequence[RecordedWindow]) -> list[str]:
    """One line per window not about caching whose requests the prefix cache answered."""
    lines = []
    for recorded in windows:
        cache = recorded.window.prompt_cache
        if cache is not None and cache.flatters:
            lines.append(f"{recorded.provenance.test}: {cache.hits} of {cache.requests} "
                         "requests took most of their prompt from the prefix cache: TTFT is "
                         "flattered (the test is not about caching)")
    return lines

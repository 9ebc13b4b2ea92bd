"""The report's sections for sweeps and capacity searches: the headline capacity figures first,
then each search's probe (or point) table and chart."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from pytest_llmperf.report.cells import cell
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.recorded import (
    RecordedCapacity,
    RecordedPrefixCache,
    RecordedSearch,
    RecordedSweep,
)

__all__ = ["searches_markdown"]

_COLUMNS = (("TTFT p95 ms", "ttft_ms_p95"), ("TPOT p95 ms", "tpot_ms_p95"),
            ("decode tok/s/user", "decode_tokens_per_s_mean"),
            ("output tok/s", "output_token_throughput"), ("req/s", "request_throughput"),
            ("error rate", "error_rate"))


def searches_markdown(searches: Sequence[RecordedSearch]) -> list[str]:
    if not searches:
        return []
    lines: list[str] = []
    capacities = [s for s in searches if isinstance(s, RecordedCapacity)]
    if capacities:
        lines += ["## Capacity", "", _headline(capacities), ""]
    for search in searches:
        if isinstance(search, RecordedCapacity):
            lines += _capacity_section(search)
        elif isinstance(search, RecordedPrefixCache):
            lines += _prefix_cache_section(search)
        else:
            lines += _sweep_section(search)
    return lines


def _headline(capacities: Sequence[RecordedCapacity]) -> str:
    rows = [[f"`{c.provenance.test}`", f"{c.served.model} on {c.served.backend}",
             f"{cell(c.search.capacity)} {c.search.unit}" if c.search.capacity is not None
             else "none",
             cell(c.search.goodput), c.search.boundary or "-",
             (c.search.broke_first[0].split(" -- ")[0] if c.search.broke_first else "-"),
             c.search.summary] for c in capacities]
    return tabulate(rows, headers=["test", "target", "capacity", "goodput req/s", "boundary",
                                   "broke first", "how sure"], tablefmt="github")


def _capacity_section(recorded: RecordedCapacity) -> list[str]:
    search, served = recorded.search, recorded.served
    lines = [f"## Capacity search: `{recorded.provenance.shown_nodeid}`", "",
             f"{served.description}, over {search.dimension}: **{search.summary}**. Stopped: "
             f"{search.stop_reason}, after {round(search.elapsed_s, 1):g} s of a "
             f"{search.budget_s:g} s budget.", ""]
    if recorded.baseline is not None:
        against = (recorded.comparison.describe() if recorded.comparison is not None
                   else recorded.not_compared)
        lines += [f"Against the baseline ({recorded.baseline}): {against}.", ""]
    for verdict in recorded.verdicts:
        state = "**FAIL**" if verdict.state == "fail" else verdict.state
        lines.append(f"- SLO `{verdict.check.text}`: {state} (measured "
                     f"{cell(verdict.measured)})")
    if recorded.verdicts:
        lines.append("")
    rows = []
    for probe in search.probes:
        point = probe.point or LoadPoint(probe.load, search.load_text(probe.load), 0, 0.0)
        shown = "pass" if probe.passed else "**FAIL**"
        if probe.undecided:
            shown, broke = "undecided", f"undecided: {probe.undecided}"
        if probe.pooled:  # settling: judged on its requests and the load's earlier ones
            shown += f" on {probe.pooled + point.requests} pooled"
        broke = "; ".join(b.split(" -- ")[0] for b in probe.broke) or "-"
        if probe.discarded:  # not counted: it read this, on a machine it could not trust
            shown = f"discarded ({'pass' if probe.passed else 'fail'})"
            broke = f"discarded: {probe.discarded}" + ("" if broke == "-" else f"; {broke}")
        rows.append([point.label or point.load, shown, point.requests, *_figures(point),
                     cell(probe.goodput), broke])
    headers = ["load", "verdict", "requests", *(name for name, _ in _COLUMNS),
               "goodput req/s", "what broke"]
    return [*lines, tabulate(rows, headers=headers, tablefmt="github"), "",
            *_chart(recorded.chart_png, "capacity")]


def _prefix_cache_section(recorded: RecordedPrefixCache) -> list[str]:
    gain = recorded.gain
    lines = [f"## Prefix cache: `{recorded.provenance.shown_nodeid}`", "",
             f"{recorded.served.description}: **{gain.summary}**. Each pass is a measured "
             "window of its own (full tables below).", ""]
    rows = [[point.label, point.requests, cell(point.ttft_ms_median), *_figures(point),
             cell(point.cache_hit_rate)] for point in (gain.cold, gain.warm)]
    headers = ["load", "requests", "TTFT median ms", *(name for name, _ in _COLUMNS),
               "cached share"]
    return [*lines, tabulate(rows, headers=headers, tablefmt="github"), ""]


def _sweep_section(recorded: RecordedSweep) -> list[str]:
    prefill = recorded.dimension == "input_tokens"
    how = ("each load its own warm-up and measured window" if not recorded.staged else
           "the stages one schedule after one warm-up, each stage a window of the requests "
           "scheduled in it")
    title = "Prefill sweep" if prefill else "Staged rates" if recorded.staged else "Sweep"
    lines = [f"## {title}: `{recorded.provenance.shown_nodeid}`", "",
             f"{recorded.served.description}: {how} (their full tables are below).", ""]
    if recorded.left_out:
        lines += [f"{recorded.left_out}.", ""]
    # A prefill sweep is about TTFT: its median leads.
    rows = [[f"{point.label} (overloaded)" if point.overload else point.label,
             point.requests, *([cell(point.ttft_ms_median)] if prefill else []),
             *_figures(point)] for point in recorded.rows]
    headers = ["load", "requests", *(["TTFT median ms"] if prefill else []),
               *(name for name, _ in _COLUMNS)]
    return [*lines, tabulate(rows, headers=headers, tablefmt="github"), "",
            *_chart(recorded.chart_png, "sweep")]


def _figures(point: LoadPoint) -> list[str]:
    return [cell(point.figure(field)) for _, field in _COLUMNS]


def _chart(png: str | None, kind: str) -> list[str]:
    return [f"![{kind} chart]({png})", ""] if png else []

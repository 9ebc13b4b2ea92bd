"""The report's sections for sweeps and capacity searches: the headline capacity figures first,
then each search's probe (or point) table and chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from pytest_llmperf.report.cells import cell as _cell

__all__ = ["searches_markdown"]

_COLUMNS = (("TTFT p95 ms", "ttft_ms_p95"), ("TPOT p95 ms", "tpot_ms_p95"),
            ("decode tok/s/user", "decode_tokens_per_s_mean"),
            ("output tok/s", "output_token_throughput"), ("req/s", "request_throughput"),
            ("error rate", "error_rate"))


def searches_markdown(searches: Sequence[Mapping[str, Any]]) -> list[str]:
    if not searches:
        return []
    lines: list[str] = []
    capacities = [s for s in searches if s.get("kind") == "capacity"]
    if capacities:
        lines += ["## Capacity", "", _headline(capacities), ""]
    for search in searches:
        lines += _section(search)
    return lines


def _headline(capacities: Sequence[Mapping[str, Any]]) -> str:
    rows = [[f"`{c['nodeid'].split('::')[-1]}`", f"{c['model']} on {c['backend']}",
             f"{_cell(c['capacity'])} {c['unit']}" if c["capacity"] is not None else "none",
             _cell(c.get("goodput")), c.get("boundary") or "-",
             (c["broke_first"][0].split(" -- ")[0] if c.get("broke_first") else "-"),
             c["summary"]] for c in capacities]
    return tabulate(rows, headers=["test", "target", "capacity", "goodput req/s", "boundary",
                                   "broke first", "how sure"], tablefmt="github")


def _section(search: Mapping[str, Any]) -> list[str]:
    kind = search["kind"]
    name = {"capacity": "Capacity search", "prefix_cache": "Prefix cache"}.get(
        kind, "Prefill sweep" if search.get("dimension") == "input_tokens" else "Sweep")
    lines = [f"## {name}: `{search['nodeid']}`", ""]
    if kind == "prefix_cache":
        lines += [f"{search['model']} on {search['backend']} ({search['engine']}): "
                  f"**{search['summary']}**. Each pass is a measured window of its own "
                  "(full tables below).", ""]
    elif kind == "capacity":
        lines += [f"{search['model']} on {search['backend']} ({search['engine']}), over "
                  f"{search['dimension']}: **{search['summary']}**. Stopped: "
                  f"{search['stop_reason']}, after {search['elapsed_s']:g} s of a "
                  f"{search['budget_s']:g} s budget.", ""]
        comparison = search.get("comparison")
        if comparison:
            lines += [f"Against the baseline ({comparison['baseline']}): "
                      f"{comparison.get('description') or comparison.get('missing')}.", ""]
        for verdict in search.get("verdicts", []):
            state = verdict.get("state", "pass")
            lines.append(f"- SLO `{verdict['check']}`: {'**FAIL**' if state == 'fail' else state}"
                         f" (measured {_cell(verdict['measured'])})")
        if search.get("verdicts"):
            lines.append("")
    else:
        lines += [f"{search['model']} on {search['backend']} ({search['engine']}): each load "
                  "its own warm-up and measured window (their full tables are below).", ""]
        if search.get("left_out"):
            lines += [f"{search['left_out']}.", ""]
    lines += [_table(search), ""]
    if search.get("chart_png"):
        lines += [f"![{kind} chart]({search['chart_png']})", ""]
    return lines


def _table(search: Mapping[str, Any]) -> str:
    probe = search["kind"] == "capacity"
    # A prefill sweep and the cache passes are about TTFT: its median leads.
    median = any("ttft_ms_median" in row for row in search["rows"])
    cached = search["kind"] == "prefix_cache"
    rows = []
    for row in search["rows"]:
        cells = [row.get("label") or row["load"], row.get("requests", "-"),
                 *([_cell(row.get("ttft_ms_median"))] if median else []),
                 *(_cell(row.get(key)) for _, key in _COLUMNS),
                 *([_cell(row.get("cached_share"))] if cached else [])]
        if probe:
            cells.insert(1, "pass" if row["passed"] else "**FAIL**")
            cells.append(_cell(row.get("goodput")))
            cells.append("; ".join(b.split(" -- ")[0] for b in row.get("broke", [])) or "-")
        elif row.get("overload"):
            cells[0] = f"{cells[0]} (overloaded)"
        rows.append(cells)
    headers = ["load", "requests", *(["TTFT median ms"] if median else []),
               *(name for name, _ in _COLUMNS), *(["cached share"] if cached else [])]
    if probe:
        headers.insert(1, "verdict")
        headers += ["goodput req/s", "what broke"]
    return tabulate(rows, headers=headers, tablefmt="github")

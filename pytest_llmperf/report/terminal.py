"""The summary table pytest prints at the end of the session."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from pytest_llmperf.report.cells import cell as _cell
from pytest_llmperf.report.cells import verdict_summary as _verdict_summary

__all__ = ["cache_warning_lines", "capacity_lines", "inconclusive_lines",
           "render_terminal_table", "validity_lines"]


def render_terminal_table(entries: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for entry in entries:
        d, s = entry["distributions"], entry["scalars"]
        rows.append([
            entry["nodeid"].split("::")[-1], _load(entry), entry["requests"],
            _cell(d["ttft_ms"]["p95"]), _cell(d["tpot_ms"]["p95"]),
            _cell(d["decode_tokens_per_s"]["mean"]), _cell(s["output_token_throughput"]),
            _cell(s["error_rate"]), _verdict_summary(entry),
        ])
    headers = ["test", "load", "reqs", "TTFT p95 ms", "TPOT p95 ms", "decode tok/s/user",
               "output tok/s", "error rate", "SLO"]
    return tabulate(rows, headers=headers, tablefmt="simple")


def _load(entry: Mapping[str, Any]) -> str:
    """``4 users`` or ``2 req/s poisson``, and ``OVERLOADED`` when the queue grew."""
    label = str(entry["load"].get("label") or f"{entry['users']} users")
    prompts = entry.get("prompts") or {}
    if prompts.get("source") == "random":  # the prompt length is part of the load
        label += f", {prompts.get('input_tokens')} tok in"
    elif prompts.get("source") not in (None, "built-in"):
        label += f", {prompts['source']}"
    marks = "".join(f" {mark.upper()}" for mark in entry.get("validity") or {})
    return label + (" OVERLOADED" if entry.get("overload") else "") + marks


def inconclusive_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per inconclusive SLO verdict: the value meets it, the sample cannot say so
    (none for those --llmperf-inconclusive=pass counts as passed without a word)."""
    lines = []
    for entry in entries:
        for verdict in entry["verdicts"]:
            if (verdict.get("state") == "inconclusive"
                    and verdict.get("inconclusive_policy") != "pass"):
                counted = "passed" if verdict["passed"] else "failed"
                lines.append(f"{entry['nodeid'].split('::')[-1]}: {verdict['note']} "
                             f"[{counted}: --llmperf-inconclusive="
                             f"{verdict.get('inconclusive_policy')}]")
    return lines


def capacity_lines(searches: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per capacity search: the test, its headline figure and how sure it is."""
    lines = []
    for entry in searches:
        if entry.get("kind") == "prefix_cache":
            lines.append(f"{entry['nodeid'].split('::')[-1]}: {entry['summary']}")
        if entry.get("kind") != "capacity":
            continue
        test = entry["nodeid"].split("::")[-1]
        goodput = (f", goodput {_cell(entry['goodput'])} req/s"
                   if entry.get("goodput") is not None else "")
        boundary = f", {entry['boundary']} boundary" if entry.get("boundary") else ""
        broke = (f"; broke first: {entry['broke_first'][0].split(' -- ')[0]}"
                 if entry.get("broke_first") else "")
        comparison = entry.get("comparison") or {}
        against = (f"; against the baseline: "
                   f"{comparison.get('description') or comparison.get('missing')}"
                   if comparison else "")
        lines.append(f"{test}: {entry['summary']}{goodput}{boundary}{broke} "
                     f"[{len(entry['rows'])} probes, {entry['elapsed_s']:g} s]{against}")
    return lines


def validity_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per window whose numbers cannot be fully trusted: the mark and the limits its
    figures crossed (observe.health)."""
    return [f"{entry['nodeid'].split('::')[-1]} ({entry['load'].get('label')}): {mark}: "
            f"{', '.join(crossed)}"
            for entry in entries for mark, crossed in (entry.get("validity") or {}).items()]


def cache_warning_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per window not about caching whose requests the prefix cache answered."""
    lines = []
    for entry in entries:
        cache = entry.get("prompt_cache") or {}
        if cache.get("hits") and not cache.get("about_caching"):
            lines.append(f"{entry['nodeid'].split('::')[-1]}: {cache['hits']} of "
                         f"{cache['requests']} requests took most of their prompt from the "
                         "prefix cache: TTFT is flattered (the test is not about caching)")
    return lines

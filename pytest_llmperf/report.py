"""Reports: the JSON entry each test carries, junit properties, markdown and terminal tables.

A test's results travel as plain JSON on its report object (so they survive pytest-xdist) and
are rendered once, by the controlling process, at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from pytest_llmperf.environment import host_facts
from pytest_llmperf.metrics import DISTRIBUTIONS, REPORTED_STATISTICS, SCALARS
from pytest_llmperf.slo import Verdict, format_number

if TYPE_CHECKING:
    from pytest_llmperf.runner import PerfResult

__all__ = [
    "render_markdown",
    "render_terminal_table",
    "result_entry",
    "result_properties",
    "verdict_entry",
    "write_atomic",
    "write_reports",
]

# Distributions shown in the per-test table (input/output token counts are in the header).
_TABLE_METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "decode_tokens_per_s")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def result_entry(result: PerfResult) -> dict[str, Any]:
    """Everything the reports need from one measured window, as plain JSON."""
    served = result.served
    summary = result.metrics.summary()
    return {
        "backend": served.backend,
        "model": served.model,
        "engine": served.engine,
        "model_file": served.model_file,
        "model_sha256": served.model_sha256,
        "users": result.users,
        "requests": len(result.run.records),
        "warmup": result.run.warmup_requests,
        "max_tokens": result.max_tokens,
        "token_sources": list(result.metrics.output_token_sources),
        "distributions": {
            name: {stat: _rounded(value) for stat, value in stats.items()}
            for name, stats in summary.items()
        },
        "scalars": {name: _rounded(value) for name, value in result.metrics.scalars.items()},
        "verdicts": [],
    }


def result_properties(result: PerfResult) -> list[tuple[str, object]]:
    """junit properties: ``ttft_ms.p95`` ... and the whole-run numbers."""
    entry = result_entry(result)
    props: list[tuple[str, object]] = [
        ("target", f"{entry['backend']}-{entry['model']}"),
        ("engine", entry["engine"]),
        ("users", entry["users"]),
        ("token_source", ",".join(entry["token_sources"])),
    ]
    for name, stats in entry["distributions"].items():
        props.extend((f"{name}.{stat}", value) for stat, value in stats.items())
    props.extend(entry["scalars"].items())
    return props


def verdict_entry(verdict: Verdict) -> dict[str, Any]:
    return {
        "check": verdict.check.text,
        "key": verdict.check.key,
        "origin": verdict.check.origin,
        "requirement": f"{verdict.check.operator} {verdict.check.limit_text} "
        f"{verdict.unit}".strip(),
        "measured": _rounded(verdict.measured),
        "unit": verdict.unit,
        "passed": verdict.passed,
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else format_number(value)


def _verdict_summary(entry: Mapping[str, Any]) -> str:
    verdicts = entry["verdicts"]
    if not verdicts:
        return "not checked"
    failed = sum(not v["passed"] for v in verdicts)
    return f"{len(verdicts) - failed}/{len(verdicts)} pass"


def render_terminal_table(entries: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for entry in entries:
        d, s = entry["distributions"], entry["scalars"]
        rows.append([
            entry["nodeid"].split("::")[-1], entry["users"], entry["requests"],
            _cell(d["ttft_ms"]["p95"]), _cell(d["tpot_ms"]["p95"]),
            _cell(d["decode_tokens_per_s"]["mean"]), _cell(s["output_token_throughput"]),
            _cell(s["error_rate"]), _verdict_summary(entry),
        ])
    headers = ["test", "users", "reqs", "TTFT p95 ms", "TPOT p95 ms", "decode tok/s/user",
               "output tok/s", "error rate", "SLO"]
    return tabulate(rows, headers=headers, tablefmt="simple")


def render_markdown(entries: Sequence[Mapping[str, Any]], rootdir: Path) -> str:
    lines = ["# LLM serving performance", "", *_environment_section(entries, rootdir), ""]
    for entry in entries:
        lines.extend(_test_section(entry))
    lines.extend(_definitions())
    return "\n".join(lines) + "\n"


def _environment_section(entries: Sequence[Mapping[str, Any]], rootdir: Path) -> list[str]:
    facts = host_facts(rootdir)
    rows = [[name, value] for name, value in facts.items()]
    served: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        served.setdefault(f"{entry['backend']}-{entry['model']}", entry)
    for target, entry in served.items():
        rows.append([f"target {target}", entry["engine"]])
        if entry.get("model_file"):
            rows.append(["model file", f"`{entry['model_file']}`"])
        if entry.get("model_sha256"):
            rows.append(["model sha256", f"`{entry['model_sha256']}`"])
    return ["## Environment", "", tabulate(rows, headers=["", ""], tablefmt="github")]


def _test_section(entry: Mapping[str, Any]) -> list[str]:
    outcome = entry.get("outcome", "")
    title = f"## `{entry['nodeid']}`" + (f" - {outcome.upper()}" if outcome else "")
    sources = ", ".join(entry["token_sources"]) or "none (no request completed)"
    header = (
        f"{entry['model']} on {entry['backend']} ({entry['engine']}): {entry['users']} "
        f"user(s), {entry['requests']} measured requests after {entry['warmup']} warm-up, "
        f"max_tokens {entry['max_tokens']}, output tokens counted by: {sources}."
    )
    lines = [title, "", header, ""]
    if entry["verdicts"]:
        rows = [
            [v["key"], _cell(v["measured"]) + (f" {v['unit']}" if v["unit"] else ""),
             v["requirement"], "pass" if v["passed"] else "**FAIL**", v["origin"]]
            for v in entry["verdicts"]
        ]
        lines += [tabulate(rows, headers=["metric", "measured", "SLO", "verdict", "defined at"],
                           tablefmt="github"), ""]
    stats = list(REPORTED_STATISTICS)
    rows = [[f"{name} ({DISTRIBUTIONS[name].unit})",
             *(_cell(entry["distributions"][name][s]) for s in stats)] for name in _TABLE_METRICS]
    lines += [tabulate(rows, headers=["metric", *stats], tablefmt="github"), ""]
    scalar_rows = [[f"{name} ({SCALARS[name].unit})" if SCALARS[name].unit else name,
                    _cell(value)] for name, value in entry["scalars"].items()]
    lines += [tabulate(scalar_rows, headers=["run", "value"], tablefmt="github"), ""]
    return lines


def _definitions() -> list[str]:
    return [
        "## Definitions",
        "",
        "TTFT = first streamed token - request sent; E2EL = last token - request sent; "
        "TPOT = (E2EL - TTFT) / (output tokens - 1); ITL = gaps between streamed chunks; "
        "decode tok/s/user = 1 / TPOT; throughputs = tokens or requests / measured window "
        "(warm-up excluded). Percentiles interpolate linearly; stdev is the population stdev.",
        "",
    ]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def write_reports(markdown: str, path: Path | None, github_summary: str | None) -> None:
    if path is not None:
        write_atomic(path, markdown)
    if github_summary:
        with open(github_summary, "a", encoding="utf-8") as handle:
            handle.write(markdown)


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

from pytest_llmperf.observe.host import host_facts
from pytest_llmperf.results.metrics import DISTRIBUTIONS, REPORTED_STATISTICS, SCALARS
from pytest_llmperf.results.slo import Verdict, format_number

if TYPE_CHECKING:
    from pytest_llmperf.load.runner import PerfResult

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
# Client metric beside the engine's own: (row, client distribution, server fields, first
# offered wins).  llama.cpp has no TPOT histogram; its decode time per token stands in.
_SIDE_BY_SIDE = (
    ("TTFT (ms)", "ttft_ms", ("server_ttft_ms_mean",)),
    ("TPOT (ms)", "tpot_ms", ("server_tpot_ms_mean", "server_decode_ms_per_token")),
    ("E2E latency (ms)", "e2el_ms", ("server_e2e_ms_mean",)),
)
# The other server numbers, in this order, with their row labels.
_SERVER_ROWS = {
    "prompt_tokens": "prompt tokens",
    "generation_tokens": "generated tokens",
    "server_queue_ms_mean": "queue time mean (ms)",
    "server_prefill_ms_per_token": "prefill time per prompt token (ms)",
    "preemptions": "preemptions",
    "prefix_cache_hit_rate": "prefix cache hit rate",
    "kv_cache_usage_peak": "KV cache usage peak",
    "kv_cache_usage_mean": "KV cache usage mean",
    "requests_running_peak": "requests running peak",
    "requests_waiting_peak": "requests waiting peak",
}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def result_entry(result: PerfResult, timeline_png: Path | None = None) -> dict[str, Any]:
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
        "scalars": {name: _rounded(value) for name, value in result.metrics.scalars.items()
                    if name in SCALARS},
        "resources": _resources_entry(result.telemetry, timeline_png),
        # What the client counted, beside the engine's token counters.
        "client_tokens": {
            "input": sum(r.input_tokens or 0 for r in result.run.records if r.ok),
            "output": sum(r.output_tokens for r in result.run.records if r.ok),
        },
        # Answers shorter than max_tokens: an engine that cannot ignore EOS (Ollama, TGI)
        # makes per-user speed a figure over shorter answers; the reader must see that.
        "short_answers": sum(r.ok and r.output_tokens < result.max_tokens
                             for r in result.run.records),
        "server_metrics": None if result.server_metrics is None else {
            name: _rounded(value) for name, value in result.server_metrics.items()
        },
        "server_notes": list(result.server_notes),
        "verdicts": [],
    }


def _resources_entry(
    telemetry: Mapping[str, Any] | None, timeline_png: Path | None
) -> dict[str, Any] | None:
    """The telemetry figures minus the per-sample timeline (that goes to the PNG)."""
    if telemetry is None:
        return None
    entry = {key: value for key, value in telemetry.items() if key != "timeline"}
    entry["timeline_png"] = str(timeline_png) if timeline_png else None
    return entry


def result_properties(result: PerfResult) -> list[tuple[str, object]]:
    """junit properties: ``ttft_ms.p95`` ... and the whole-run numbers."""
    entry = result_entry(result)
    props: list[tuple[str, object]] = [
        ("target", f"{entry['backend']}-{entry['model']}"),
        ("engine", entry["engine"]),
        ("users", entry["users"]),
        ("token_source", ",".join(entry["token_sources"])),
        ("short_answers", entry["short_answers"]),
    ]
    for name, stats in entry["distributions"].items():
        props.extend((f"{name}.{stat}", value) for stat, value in stats.items())
    props.extend(entry["scalars"].items())
    props.extend((f"server.{name}", value)
                 for name, value in (entry["server_metrics"] or {}).items())
    resources = entry["resources"] or {}
    props.extend((f"resources.{name}", value)
                 for name, value in resources.get("metrics", {}).items())
    if resources.get("gpu_unavailable_reason"):
        props.append(("resources.gpu_unavailable_reason", resources["gpu_unavailable_reason"]))
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
        "state": verdict.state,
        "note": verdict.describe() if verdict.measured is None else None,
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else format_number(value)


def _count_cell(value: float | None) -> str:
    """Whole numbers (token counts, peaks of request gauges) without a decimal point."""
    if value is not None and float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return _cell(value)


def _verdict_summary(entry: Mapping[str, Any]) -> str:
    verdicts = entry["verdicts"]
    if not verdicts:
        return "not checked"
    failed = sum(not v["passed"] for v in verdicts)
    skipped = sum(v.get("state") == "skip" for v in verdicts)
    text = f"{len(verdicts) - failed - skipped}/{len(verdicts)} pass"
    return text + (f", {skipped} skipped" if skipped else "")


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
    lines.extend(_definitions(entries))
    return "\n".join(lines) + "\n"


def _environment_section(entries: Sequence[Mapping[str, Any]], rootdir: Path) -> list[str]:
    facts = host_facts(rootdir)
    rows = [[name, value] for name, value in facts.items()]
    served: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        model = entry["model"]
        name = Path(model).name if Path(model).is_absolute() else model  # as in the test ids
        served.setdefault(f"{entry['backend']}-{name}", entry)
    for target, entry in served.items():
        rows.append([f"target {target}", entry["engine"]])
        if entry.get("model_file"):
            rows.append(["model file", f"`{entry['model_file']}`"])
        if entry.get("model_sha256"):
            rows.append(["model sha256", f"`{entry['model_sha256']}`"])
    return ["## Environment", "", tabulate(rows, headers=["", ""], tablefmt="github")]


def _verdict_cell(verdict: Mapping[str, Any]) -> str:
    state = verdict.get("state") or ("pass" if verdict["passed"] else "fail")
    if state == "skip":
        return f"skipped ({verdict['note'].split(': ', 1)[-1].split(';')[0]})"
    return "pass" if state == "pass" else "**FAIL**"


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
    short = entry.get("short_answers") or 0
    if short:
        lines += [f"**{short} of {entry['requests']} answers ended before max_tokens** "
                  "(finish_reason stop: the engine did not ignore EOS), so the figures are over "
                  "shorter answers than asked for.", ""]
    if entry["verdicts"]:
        rows = [
            [v["key"], _cell(v["measured"]) + (f" {v['unit']}" if v["unit"] and
                                               v["measured"] is not None else ""),
             v["requirement"], _verdict_cell(v), v["origin"]]
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
    lines += _server_section(entry)
    lines += _resources_section(entry.get("resources"))
    return lines


def _resources_section(resources: Mapping[str, Any] | None) -> list[str]:
    """Server CPU/RAM, the machine, and each GPU, over the measured window."""
    if not resources:
        return []
    server, system = resources.get("server", {}), resources.get("system", {})
    rows = []
    for label, figure, unit in (("server CPU", server.get("cpu_pct"), "% of one core"),
                                ("server RSS", server.get("rss_mib"), "MiB"),
                                ("system CPU", system.get("cpu_pct"), "% of all cores"),
                                ("system memory used", system.get("memory_used_mib"), "MiB")):
        if figure:
            rows.append([f"{label} ({unit})", _cell(figure.get("mean")), _cell(figure.get("peak"))])
    lines = [f"Resources over the window ({server.get('scope', 'no server process')}"
             + (f", pid {server['pid']}" if server.get("pid") else "") + "):", ""]
    if rows:
        lines += [tabulate(rows, headers=["", "mean", "peak"], tablefmt="github"), ""]
    if system.get("memory_limit_mib"):
        lines += [f"Memory limit (RAM or cgroup): {_cell(system['memory_limit_mib'])} MiB.", ""]
    if resources.get("gpus"):
        gpu_rows = [[f"{g['index']}: {g['name']}", *(_gpu_cell(g, key) for key in _GPU_COLUMNS),
                     _cell(g.get("energy_j"))] for g in resources["gpus"]]
        headers = [*("GPU", *(f"{label}" for _, label in _GPU_COLUMNS.items())), "energy J"]
        lines += [tabulate(gpu_rows, headers=headers, tablefmt="github"), ""]
        metrics = resources.get("metrics", {})
        if "energy_j_per_token" in metrics:
            lines += [f"Energy per output token: {_cell(metrics['energy_j_per_token'])} J.", ""]
    elif resources.get("gpu_unavailable_reason"):
        lines += [f"GPU: {resources['gpu_unavailable_reason']} (GPU metrics absent).", ""]
    if resources.get("timeline_png"):
        lines += [f"Timeline: ![timeline]({resources['timeline_png']})", ""]
    if resources.get("error"):
        lines += [f"Telemetry error: {resources['error']}", ""]
    return lines


# Per-GPU figure -> column label (mean/peak where both exist).
_GPU_COLUMNS = {
    "util_pct": "util % mean/peak",
    "memory_used_mib": "memory MiB mean/peak",
    "process_memory_mib": "server GPU memory MiB peak",
    "power_w": "power W mean/peak",
    "temperature_c": "temp C peak",
    "sm_clock_mhz": "SM clock MHz mean",
}


def _gpu_cell(gpu: Mapping[str, Any], key: str) -> str:
    figure = gpu.get(key)
    if not isinstance(figure, Mapping):
        return "-"
    if key in ("process_memory_mib", "temperature_c"):
        return _cell(figure.get("peak"))
    if key == "sm_clock_mhz":
        return _cell(figure.get("mean"))
    return f"{_cell(figure.get('mean'))} / {_cell(figure.get('peak'))}"


def _server_section(entry: Mapping[str, Any]) -> list[str]:
    """Client and engine numbers side by side, then the engine's other deltas."""
    server: Mapping[str, float | None] = entry.get("server_metrics") or {}
    notes: Sequence[str] = entry.get("server_notes") or ()
    lines: list[str] = []
    if server:
        rows = []
        for label, name, fields in _SIDE_BY_SIDE:
            client = entry["distributions"][name]
            offered = next((f for f in fields if server.get(f) is not None), None)
            server_cell = "-" if offered is None else _cell(server[offered])
            if offered == "server_decode_ms_per_token":
                server_cell += " (decode time / generated tokens)"
            rows.append([label, f"{_cell(client['mean'])}, {_cell(client['p95'])}",
                         server_cell])
        # disable_numparse: keep format_number's digits ("371.0", not "371").
        lines += [tabulate(rows, headers=["metric", "client (mean, p95)", "server (mean)"],
                           tablefmt="github", disable_numparse=True), ""]
        client_tokens = entry.get("client_tokens") or {}
        counted = {"prompt_tokens": client_tokens.get("input"),
                   "generation_tokens": client_tokens.get("output")}
        shown = set(_SERVER_ROWS) | {f for _, _, fields in _SIDE_BY_SIDE for f in fields}
        other = [[label, _count_cell(server[name]) + (f" (client: {counted[name]})"
                                                 if counted.get(name) is not None else "")]
                 for name, label in _SERVER_ROWS.items() if server.get(name) is not None]
        other += [[name, _count_cell(value)] for name, value in server.items()
                  if name not in shown and value is not None]
        if other:
            lines += [tabulate(other, headers=["server, over the window", "value"],
                               tablefmt="github", disable_numparse=True), ""]
    if notes:
        lines += [*(f"- server metrics: {note}" for note in notes), ""]
    return lines


def _definitions(entries: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    lines = [
        "## Definitions",
        "",
        "TTFT = first streamed token - request sent; E2EL = last token - request sent; "
        "TPOT = (E2EL - TTFT) / (output tokens - 1); ITL = gaps between streamed chunks; "
        "decode tok/s/user = 1 / TPOT; throughputs = tokens or requests / measured window "
        "(warm-up excluded). Percentiles interpolate linearly; stdev is the population stdev.",
        "",
    ]
    if any(entry.get("server_metrics") for entry in entries):
        lines += [
            "Server numbers are the engine's own Prometheus metrics over the same window, "
            "scraped just before and just after it (summed over its label sets, the KV cache "
            "usage ratio averaged): a server "
            "mean is the change of a histogram's sum / the change of its count; token counts "
            "are counter changes; decode time / generated tokens and prefill time per prompt "
            "token divide llama.cpp's time counters by its token counters; KV cache and "
            "request peaks come from polling the engine's gauges every 0.5 s during the "
            "window. The engine measures from when it receives a request to when it emits a "
            "token, so its times leave out the network and the client.",
            "",
        ]
    return lines


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


"""The markdown report a person reads first: environment, one section per measured window,
the definitions of every number."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pytest_llmperf.observe.host import host_facts
from pytest_llmperf.report.cells import cell as _cell
from pytest_llmperf.report.cells import count_cell as _count_cell
from pytest_llmperf.report.comparison import comparison_markdown
from pytest_llmperf.report.search_markdown import searches_markdown
from pytest_llmperf.results.metrics import DISTRIBUTIONS, REPORTED_STATISTICS, SCALARS

__all__ = ["render_markdown"]

# Distributions shown in the per-test table (input/output token counts are in the header).
_TABLE_METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "decode_tokens_per_s")
# Shown too for an open loop (they have values only there).
_SCHEDULE_METRICS = ("schedule_slip_ms", "ttft_from_schedule_ms", "e2el_from_schedule_ms")
# Shown too when answers reasoned first (results.answer).
_ANSWER_METRICS = ("time_to_answer_ms", "answer_e2el_ms", "answer_decode_tokens_per_s",
                   "reasoning_tokens", "answer_tokens")
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


def render_markdown(entries: Sequence[Mapping[str, Any]], rootdir: Path,
                    searches: Sequence[Mapping[str, Any]] = ()) -> str:
    """The report: environment, capacity figures and searches, then every measured window."""
    lines = ["# LLM serving performance", "",
             *_environment_section([*entries, *searches], rootdir), ""]
    lines.extend(searches_markdown(searches))
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
    if state == "inconclusive":
        # "...: inconclusive, 32 requests are too few ...; about 59 requests would settle it"
        why = verdict["note"].split(": inconclusive, ", 1)[-1]
        return ("**inconclusive, counted as a FAIL**" if not verdict["passed"]
                else "inconclusive") + f" ({why})"
    return "pass" if state == "pass" else "**FAIL**"


_PROMPT_DETAILS = ("path", "input_tokens", "output_tokens", "documents", "questions",
                   "document_tokens", "question_tokens", "left_out_by_length",
                   "passes_over_the_file")


def prompts_sentence(entry: Mapping[str, Any]) -> str:
    """" Prompts: random (input_tokens 512, output_tokens 64), seed 0, salt ab12; the chat
    template adds 30 tokens.": where the prompts came from and how to get them again."""
    prompts = entry.get("prompts") or {}
    if not prompts:
        return ""
    details = ", ".join(f"{key} {prompts[key]}" for key in _PROMPT_DETAILS
                        if prompts.get(key) is not None)
    sentence = (f" Prompts: {prompts.get('source')}" + (f" ({details})" if details else "")
                + f", seed {prompts.get('seed')}, salt {prompts.get('salt')}")
    overhead = entry.get("template_overhead")
    if overhead:
        added = f"{overhead[0]}" if overhead[0] == overhead[1] else f"{overhead[0]}-{overhead[1]}"
        sentence += (f"; the server counted {added} prompt tokens beyond each exact user text "
                     "(its chat template)")
    if prompts.get("made_in_window"):
        sentence += (f"; {prompts['made_in_window']} prompts were made inside the window "
                     "(asking the tokenizer between requests)")
    return sentence + "."


def cache_lines(entry: Mapping[str, Any]) -> list[str]:
    """The prefix cache's share of the prompts, and a warning when a test that is not about
    caching was answered from it."""
    cache = entry.get("prompt_cache")
    if not cache:
        return []
    share = cache["cached_tokens"] / cache["prompt_tokens"] if cache["prompt_tokens"] else 0.0
    line = (f"Prefix cache: the server served {cache['cached_tokens']} of "
            f"{cache['prompt_tokens']} prompt tokens from its cache ({share:.0%}); "
            f"{cache['hits']} of {cache['requests']} requests took more than half their "
            "prompt (and more than a chat template's head) from it.")
    if cache["hits"] and not cache["about_caching"]:
        line = (f"**Cache hits in a test not about caching: {cache['hits']} of "
                f"{cache['requests']} requests took most of their prompt from the prefix "
                "cache, so their TTFT is flattered.** " + line)
    return [line, ""]


def _test_section(entry: Mapping[str, Any]) -> list[str]:
    outcome = entry.get("outcome", "")
    title = f"## `{entry['nodeid']}`" + (f" - {outcome.upper()}" if outcome else "")
    sources = ", ".join(entry["token_sources"]) or "none (no request completed)"
    header = (
        f"{entry['model']} on {entry['backend']} ({entry['engine']}): "
        f"{entry['load'].get('label') or str(entry['users']) + ' user(s)'}, "
        f"{entry['requests']} measured requests after {entry['warmup']} warm-up, "
        f"max_tokens {entry['max_tokens']}, output tokens counted by: {sources}."
    )
    approximate = entry.get("approximate_counts") or 0
    if approximate:
        header += (f" {approximate} output counts are approximate (the server sent no usage: "
                   "the answer's text was re-tokenized).")
    resent = entry.get("resent") or 0
    if resent:
        header += (f" {resent} request(s) were sent a second time: the server had closed their "
                   "pooled connection before answering (not failures; timed from the resend).")
    header += prompts_sentence(entry)
    lines = [title, "", header, ""]
    lines += cache_lines(entry)
    lines += validity_markdown(entry)
    if entry.get("reasoning_requests"):
        lines += [f"{entry['reasoning_requests']} answers reasoned before they answered: TTFT "
                  "is their first token of any kind, time_to_answer_ms their first answer "
                  "token.", ""]
    if entry.get("overload"):
        lines += [f"**{entry['overload'][0].upper()}{entry['overload'][1:]}.**", ""]
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
    shown = [*_TABLE_METRICS, *(name for name in _SCHEDULE_METRICS
                                if entry["distributions"].get(name, {}).get("mean") is not None)]
    if entry.get("reasoning_requests"):
        shown += _ANSWER_METRICS
    rows = [[f"{name} ({DISTRIBUTIONS[name].unit})",
             *(_cell(entry["distributions"][name][s]) for s in stats)] for name in shown]
    lines += [tabulate(rows, headers=["metric", *stats], tablefmt="github"), ""]
    # Error kinds that did not occur are left out (junit and the store keep every count).
    scalar_rows = [[f"{name} ({SCALARS[name].unit})" if SCALARS[name].unit else name,
                    _cell(value)] for name, value in entry["scalars"].items()
                   if value or not name.startswith("errors.")]
    lines += [tabulate(scalar_rows, headers=["run", "value"], tablefmt="github"), ""]
    lines += _errors_section(entry.get("errors") or {})
    lines += _server_section(entry)
    lines += _resources_section(entry.get("resources"))
    if entry.get("comparison"):
        lines += comparison_markdown(entry["comparison"])
    return lines


def validity_markdown(entry: Mapping[str, Any]) -> list[str]:
    """A bold line per mark the window earned, and the health figures behind it."""
    lines = [f"**{mark}**: {', '.join(crossed)} (README, \"Can the numbers be trusted?\")"
             for mark, crossed in (entry.get("validity") or {}).items()]
    health = entry.get("health") or {}
    figures = [f"{name} {health[name]:g}" for name in _HEALTH_FIGURES if name in health]
    if figures:
        lines.append("Client and machine over the window: " + ", ".join(figures) + ".")
    return [*lines, ""] if lines else []


_HEALTH_FIGURES = ("client_processes", "loop_lag_ms_p99", "loop_lag_ms_max", "client_cpu_pct",
                   "send_late_ms_p99", "other_cpu_pct", "steal_pct")


def _errors_section(errors: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Failed requests by kind, with the first message of each."""
    if not errors:
        return []
    rows = [[kind, found["count"], _message_cell(found["example"])]
            for kind, found in errors.items()]
    return ["Failed requests by kind:", "",
            tabulate(rows, headers=["kind", "requests", "first message"], tablefmt="github"), ""]


def _message_cell(message: str) -> str:
    """A server's message as one table cell: a | in it would split the row."""
    return "`" + message.replace("`", "'").replace("|", "\\|") + "`"


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
        "TPOT = (E2EL - TTFT) / (output tokens - 1), for answers of 2+ tokens that came in "
        "more than one chunk (the others are counted as untimed_decodes); ITL = gaps between "
        "streamed chunks; decode tok/s/user = 1 / TPOT; throughputs = tokens or requests / "
        "measured window (warm-up excluded). Percentiles interpolate linearly; stdev is the "
        "population stdev.",
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

"""The report's section of one measured window: what ran, what it was held to, every figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tabulate import tabulate

from pytest_llmperf.report.cells import cell, count_cell
from pytest_llmperf.report.comparison import comparison_markdown
from pytest_llmperf.report.families_markdown import families_markdown
from pytest_llmperf.report.resources_markdown import resources_markdown
from pytest_llmperf.results.image_sizes import image_size_figures
from pytest_llmperf.results.metrics import (
    DISTRIBUTIONS,
    PER_REQUEST,
    REPORTED_STATISTICS,
    SCALARS,
)
from pytest_llmperf.results.recorded import RecordedWindow
from pytest_llmperf.results.replicas import slow_replicas
from pytest_llmperf.results.slo import Verdict
from pytest_llmperf.results.window import ErrorTally, WindowResult

__all__ = ["cache_lines", "prompts_sentence", "validity_markdown", "window_section"]

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
    "spec_acceptance_rate": "speculative decoding: draft tokens accepted",
    "spec_acceptance_length": "speculative decoding: tokens per target step",
}
# Metrics that need the reasoning tokens counted, and why other distributions can be empty.
_UNCOUNTED_REASONING = ("reasoning_tokens", "answer_tokens", "answer_decode_tokens_per_s")
_WHY_EMPTY = {
    "tpot_ms": "no completed answer streamed its tokens in more than one read",
    "itl_ms": "no completed answer streamed its tokens in more than one read",
    "decode_tokens_per_s": "no completed answer streamed its tokens in more than one read",
    "time_to_answer_ms": "no answer began after its reasoning (see unanswered)",
    "answer_e2el_ms": "no answer began after its reasoning (see unanswered)",
    "answer_decode_tokens_per_s": "no answer streamed two or more answer tokens in separate "
                                  "reads",
}
_HEALTH_FIGURES = ("client_processes", "loop_lag_ms_p99", "loop_lag_ms_max", "client_cpu_pct",
                   "send_late_ms_p99", "other_cpu_pct", "steal_pct")
_PROMPT_DETAILS = ("path", "input_tokens", "output_tokens", "documents", "questions",
                   "document_tokens", "question_tokens", "left_out_by_length",
                   "passes_over_the_file")


def window_section(recorded: RecordedWindow) -> list[str]:
    window, outcome = recorded.window, recorded.provenance.outcome
    title = (f"## `{recorded.provenance.shown_nodeid}`"
             + (f" - {outcome.upper()}" if outcome else ""))
    sources = ", ".join(window.metrics.output_token_sources) or "none (no request completed)"
    header = (f"{window.served.description}: {window.shape.label}, {window.requests} measured "
              f"requests after {window.run.warmup_requests} warm-up, max_tokens "
              f"{window.max_tokens}, output tokens counted by: {sources}.")
    if window.approximate_counts:
        header += (f" {window.approximate_counts} output counts are approximate (the server "
                   "sent no usage: the answer's text was re-tokenized).")
    if window.resent:
        header += (f" {window.resent} request(s) were sent a second time: the server had closed "
                   "their pooled connection before answering (not failures; timed from the "
                   "resend).")
    header += prompts_sentence(window)
    if window.sizing is not None:  # sized by its SLOs: how many it took, and why
        header += f" Window sized by its SLOs: {window.sizing.describe(window.requests)}."
    lines = [title, "", header, ""]
    lines += cache_lines(window)
    lines += validity_markdown(window)
    if window.reasoning_requests:
        lines += [f"{window.reasoning_requests} answers reasoned before they answered: TTFT "
                  "is their first token of any kind, time_to_answer_ms their first answer "
                  "token.", ""]
    if window.overload:
        lines += [f"**{window.overload[0].upper()}{window.overload[1:]}.**", ""]
    if window.short_answers:
        lines += [f"**{window.short_answers} of {window.requests} answers ended before "
                  "max_tokens** (finish_reason stop: the engine did not ignore EOS), so the "
                  "figures are over shorter answers than asked for.", ""]
    if recorded.verdicts:
        rows = [[v.check.key, cell(v.measured) + (f" {v.unit}" if v.unit and v.measured
                                                    is not None else ""),
                 v.requirement, verdict_cell(v), v.check.origin] for v in recorded.verdicts]
        lines += [tabulate(rows, headers=["metric", "measured", "SLO", "verdict", "defined at"],
                           tablefmt="github"), ""]
        lines += _goodput_lines(recorded)
    lines += _figures(window)
    lines += _replicas_section(window)
    lines += _image_sizes_section(window)
    lines += _errors_section(window.errors)
    lines += _server_section(window)
    lines += families_markdown(window.server_families)
    lines += resources_markdown(window.resources, recorded.timeline_png)
    if recorded.comparison is not None:
        lines += comparison_markdown(recorded.comparison)
    return lines


def _goodput_lines(recorded: RecordedWindow) -> list[str]:
    """Goodput under the window's per-request SLOs (results.goodput)."""
    figures = recorded.goodput
    if not figures:
        return []
    # A request is good when its own value meets each limit: "ttft_ms.p95 < 1000" asks
    # for ttft_ms < 1000 of it (the DistServe definition).
    held = ", ".join(dict.fromkeys(f"{v.check.metric} {v.check.operator} {v.check.limit:g}"
                                   for v in recorded.verdicts
                                   if v.check.metric in PER_REQUEST))
    # An embeddings request answers with vectors, no output tokens: no tokens figure then.
    tokens = ("" if recorded.window.metrics.value("embedded_inputs_per_s") is not None
              else f"{figures['goodput_tokens_s']:.3g} output tok/s, ")
    return [f"Goodput (the requests that each met {held}): "
            f"{figures['goodput_req_s']:.3g} req/s, {tokens}{figures['goodput_pct']:.1f} % "
            "of the window's requests.", ""]


def _image_sizes_section(window: WindowResult) -> list[str]:
    """TTFT and the server's prompt tokens per image size (results.image_sizes)."""
    figures = image_size_figures(window.run)
    if not figures:
        return []
    rows = [[f.size, f.requests, f.failed, cell(f.ttft_ms_median), cell(f.ttft_ms_p95),
             count_cell(f.input_tokens_median)] for f in figures]
    return ["Per image size (each request carried one image):", "",
            tabulate(rows, headers=["image", "requests", "failed", "TTFT median ms",
                                    "TTFT p95 ms", "prompt tokens (server, median)"],
                     tablefmt="github", disable_numparse=True), ""]


def _replicas_section(window: WindowResult) -> list[str]:
    """Each replica's share of the window, and the much slower ones (results.replicas)."""
    figures = window.replicas
    if not figures:
        return []
    rows = [[f.url, f.requests, f.failed, cell(f.medians["ttft_ms"]), cell(f.ttft_ms_p95),
             cell(f.medians["tpot_ms"]), cell(f.medians["e2el_ms"]), cell(f.output_tokens_per_s)]
            for f in figures]
    lines = [tabulate(rows, headers=["replica", "requests", "failed", "TTFT median ms",
                                     "TTFT p95 ms", "TPOT median ms", "E2EL median ms",
                                     "output tok/s"], tablefmt="github"), ""]
    flags = slow_replicas(figures)
    return lines + [f"**{flag[0].upper()}{flag[1:]}.**" for flag in flags] + ([""] if flags else [])


def verdict_cell(verdict: Verdict) -> str:
    if verdict.state == "skip":
        return f"skipped ({(verdict.unmeasured_reason or '').split(';')[0]})"
    if verdict.state == "inconclusive":
        return ("**inconclusive, counted as a FAIL**" if not verdict.passed
                else "inconclusive") + f" ({verdict.unsupported})"
    return "pass" if verdict.state == "pass" else "**FAIL**"


def _figures(window: WindowResult) -> list[str]:
    """Every distribution the window measured, then its whole-run numbers."""
    metrics = window.metrics
    stats = list(REPORTED_STATISTICS)
    shown = [*_TABLE_METRICS, *(name for name in _SCHEDULE_METRICS
                                if metrics.value(name, "mean") is not None)]
    if window.reasoning_requests:
        shown += _ANSWER_METRICS
    rows = [[f"{name} ({DISTRIBUTIONS[name].unit})",
             *(cell(metrics.value(name, stat)) for stat in stats)] for name in shown]
    # Error kinds that did not occur are left out (junit and the store keep every count).
    scalar_rows = [[f"{name} ({SCALARS[name].unit})" if SCALARS[name].unit else name,
                    cell(value)] for name, value in metrics.scalars.items()
                   if name in SCALARS and (value or not name.startswith("errors."))]
    return [tabulate(rows, headers=["metric", *stats], tablefmt="github"), "",
            *unknown_lines(window, shown),
            tabulate(scalar_rows, headers=["run", "value"], tablefmt="github"), ""]


def unknown_lines(window: WindowResult, shown: Sequence[str]) -> list[str]:
    """Why the table's empty rows are empty (junit leaves those figures out)."""
    metrics = window.metrics
    unknown = [name for name in shown if metrics.value(name, "mean") is None]
    if not unknown:
        return []
    uncounted = sum(r.ok and r.has_reasoning and r.reasoning_tokens is None
                    for r in window.run.records)
    reasons: dict[str, list[str]] = {}
    for name in unknown:
        if uncounted and name in _UNCOUNTED_REASONING:
            reason = (f"{uncounted} answers reasoned first, and neither the server "
                      "(usage.completion_tokens_details.reasoning_tokens) nor a tokenizer "
                      "counted their reasoning tokens")
        else:
            reason = _WHY_EMPTY.get(name, "no completed request measured it")
        reasons.setdefault(reason, []).append(name)
    return [f"Unknown in this window: {', '.join(names)}: {reason}."
            for reason, names in reasons.items()] + [""]


def prompts_sentence(window: WindowResult) -> str:
    """" Prompts: random (input_tokens 512, output_tokens 64), seed 0, salt ab12; the chat
    template adds 30 tokens.": where the prompts came from and how to get them again."""
    prompts = window.prompts
    if prompts is None:
        return ""
    details = ", ".join(f"{key} {prompts.details[key]}" for key in _PROMPT_DETAILS
                        if prompts.details.get(key) is not None)
    sentence = (f" Prompts: {prompts.source}" + (f" ({details})" if details else "")
                + f", seed {prompts.seed}, salt {prompts.salt}")
    overhead = window.template_overhead
    if overhead:
        added = f"{overhead[0]}" if overhead[0] == overhead[1] else f"{overhead[0]}-{overhead[1]}"
        sentence += (f"; the server counted {added} prompt tokens beyond each exact user text "
                     "(its chat template)")
    if prompts.made_in_window:
        sentence += (f"; {prompts.made_in_window} prompts were made inside the window "
                     "(asking the tokenizer between requests)")
    return sentence + "."


def cache_lines(window: WindowResult) -> list[str]:
    """The prefix cache's share of the prompts, and a warning when a test that is not about
    caching was answered from it."""
    cache = window.prompt_cache
    if cache is None:
        return []
    line = (f"Prefix cache: the server served {cache.cached_tokens} of {cache.prompt_tokens} "
            f"prompt tokens from its cache ({cache.share:.0%}); {cache.hits} of "
            f"{cache.requests} requests took more than half their prompt (and more than a chat "
            "template's head) from it.")
    if cache.flatters:
        line = (f"**Cache hits in a test not about caching: {cache.hits} of {cache.requests} "
                "requests took most of their prompt from the prefix cache, so their TTFT is "
                "flattered.** " + line)
    reuse = window.prompts.details.get("reuse_ratio") if window.prompts else None
    if isinstance(reuse, float):
        line += (f" The trace itself reuses {reuse:.0%} of its prompt tokens (blocks an earlier "
                 "request had: what a perfect prefix cache would serve).")
    return [line, ""]


def validity_markdown(window: WindowResult) -> list[str]:
    """A bold line per mark the window earned, and the health figures behind it."""
    lines = [f"**{mark}**: {', '.join(crossed)} (docs/trust.md, \"Can the numbers be trusted?\")"
             for mark, crossed in window.validity_marks.items()]
    figures = window.health.figures if window.health is not None else {}
    shown = [f"{name} {figures[name]:g}" for name in _HEALTH_FIGURES if name in figures]
    if shown:
        lines.append("Client and machine over the window: " + ", ".join(shown) + ".")
    return [*lines, ""] if lines else []


def _errors_section(errors: Mapping[str, ErrorTally]) -> list[str]:
    """Failed requests by kind, with the first message of each."""
    if not errors:
        return []
    rows = [[kind, tally.count, _message_cell(tally.example)] for kind, tally in errors.items()]
    return ["Failed requests by kind:", "",
            tabulate(rows, headers=["kind", "requests", "first message"], tablefmt="github"), ""]


def _message_cell(message: str) -> str:
    """A server's message as one table cell: a | in it would split the row."""
    return "`" + message.replace("`", "'").replace("|", "\\|") + "`"


def _server_section(window: WindowResult) -> list[str]:
    """Client and engine numbers side by side, then the engine's other deltas."""
    server: Mapping[str, float] = window.server_metrics or {}
    notes: Sequence[str] = window.server_notes
    lines: list[str] = []
    if server:
        rows = []
        for label, name, fields in _SIDE_BY_SIDE:
            offered = next((f for f in fields if server.get(f) is not None), None)
            server_cell = "-" if offered is None else cell(server[offered])
            if offered == "server_decode_ms_per_token":
                server_cell += " (decode time / generated tokens)"
            rows.append([label, f"{cell(window.metrics.value(name, 'mean'))}, "
                                f"{cell(window.metrics.value(name, 'p95'))}", server_cell])
        # disable_numparse: keep format_number's digits ("371.0", not "371").
        lines += [tabulate(rows, headers=["metric", "client (mean, p95)", "server (mean)"],
                           tablefmt="github", disable_numparse=True), ""]
        client_input, client_output = window.client_tokens
        counted = {"prompt_tokens": client_input, "generation_tokens": client_output}
        shown = set(_SERVER_ROWS) | {f for _, _, fields in _SIDE_BY_SIDE for f in fields}
        other = [[label, count_cell(server[name]) + (f" (client: {counted[name]})"
                                                     if name in counted else "")]
                 for name, label in _SERVER_ROWS.items() if server.get(name) is not None]
        other += [[name, count_cell(value)] for name, value in server.items()
                  if name not in shown]
        if other:
            lines += [tabulate(other, headers=["server, over the window", "value"],
                               tablefmt="github", disable_numparse=True), ""]
    if notes:
        lines += [*(f"- server metrics: {note}" for note in notes), ""]
    return lines

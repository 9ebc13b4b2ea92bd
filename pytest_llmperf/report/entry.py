"""The JSON entry each measured window carries: everything the reports need, as plain JSON.

A test's entries travel on its report object (so they survive pytest-xdist) and are rendered
once, by the controlling process, at the end of the session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmperf.results.errors import error_counts, error_examples
from pytest_llmperf.results.metrics import SCALARS
from pytest_llmperf.results.records import RequestRecord
from pytest_llmperf.results.slo import Verdict
from pytest_llmperf.store.documents import encode_records

if TYPE_CHECKING:
    from pytest_llmperf.load.runner import PerfResult
    from pytest_llmperf.results.sweep import SweepResult
    from pytest_llmperf.searches.capacity import CapacityResult
    from pytest_llmperf.searches.prefix_cache import PrefixCacheResult
    from pytest_llmperf.store.compare import Comparison

__all__ = ["capacity_entry", "comparison_entry", "load_row", "prefix_cache_entry",
           "prompt_cache_entry", "result_entry", "sweep_entry",
           "verdict_entry"]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# Cached prompt tokens any request may have: the chat template's head before the user's text
# (SmolLM2 25, Qwen2.5 about 20, Llama 3 about 26); a longer shared system prompt is a hit.
CACHE_HEAD_ALLOWANCE = 32


def prompt_cache_entry(records: Sequence[RequestRecord], about_caching: bool
                       ) -> dict[str, Any] | None:
    """What the server said it served from its prefix cache; None where it said nothing.
    A request counts as a hit when more than half its prompt, and more than
    ``CACHE_HEAD_ALLOWANCE`` tokens, came from the cache: every request shares its chat
    template's head (25 tokens for SmolLM2), so small counts are expected."""
    told = [r for r in records if r.ok and r.cached_tokens is not None and r.input_tokens]
    if not told:
        return None
    return {
        "requests": len(told),
        "cached_tokens": sum(r.cached_tokens or 0 for r in told),
        "prompt_tokens": sum(r.input_tokens or 0 for r in told),
        "hits": sum((r.cached_tokens or 0) > max(CACHE_HEAD_ALLOWANCE, (r.input_tokens or 0) / 2)
                    for r in told),
        "about_caching": about_caching,
    }


def _template_overhead(records: Sequence[RequestRecord]) -> list[int] | None:
    """[least, most] prompt tokens the server counted beyond the exact user text a dataset
    made (the chat template's fixed overhead); None when no prompt was made exact."""
    extra = [r.input_tokens - r.dataset_input_tokens for r in records
             if r.ok and r.input_tokens is not None and r.dataset_input_tokens is not None]
    return [min(extra), max(extra)] if extra else None


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
        "load": {**result.shape.describe(), "label": result.shape.label,
                 "concurrency": result.run.concurrency, "warmup": result.run.warmup_requests,
                 "max_tokens": result.max_tokens},
        # Open loop: why the latencies are queueing (results.pacing), else None.
        "overload": result.overload,
        "requests": len(result.run.records),
        "warmup": result.run.warmup_requests,
        "max_tokens": result.max_tokens,
        "token_sources": list(result.metrics.output_token_sources),
        # Output counts re-tokenized from the text (no usage from the server): estimates.
        "approximate_counts": sum(bool(r.approximate_counts) for r in result.run.records
                                  if r.ok),
        "prompts": dict(result.prompts or {}),
        "resent": sum(r.resent for r in result.run.records),
        "distributions": {
            name: {stat: _rounded(value) for stat, value in stats.items()}
            for name, stats in summary.items()
        },
        "scalars": {name: _rounded(value) for name, value in result.metrics.scalars.items()
                    if name in SCALARS},
        # Can the numbers be trusted: the client's and the machine's figures, and the marks
        # (client-bound, disturbed) with the limits crossed (observe.health).
        "health": dict(result.health) if result.health is not None else None,
        "validity": result.validity_marks,
        # Failed requests by kind, with the first message of each (results.errors).
        "errors": {kind: {"count": count, "example": error_examples(result.run.records)[kind]}
                   for kind, count in error_counts(result.run.records).items() if count},
        "resources": _resources_entry(result.telemetry, timeline_png),
        # What the client counted, beside the engine's token counters.
        "client_tokens": {
            "input": sum(r.input_tokens or 0 for r in result.run.records if r.ok),
            "output": sum(r.output_tokens for r in result.run.records if r.ok),
        },
        # Answers shorter than max_tokens: an engine that cannot ignore EOS (Ollama, TGI)
        # makes per-user speed a figure over shorter answers; the reader must see that.
        "short_answers": sum(r.ok and r.output_tokens < (r.max_tokens or result.max_tokens)
                             for r in result.run.records),
        "prompt_cache": prompt_cache_entry(result.run.records,
                                           bool((result.prompts or {}).get("about_caching"))),
        "template_overhead": _template_overhead(result.run.records),
        # Answers that reasoned first: the report then shows the answer's own times.
        "reasoning_requests": sum(r.ok and r.has_reasoning for r in result.run.records),
        "server_metrics": None if result.server_metrics is None else {
            name: _rounded(value) for name, value in result.server_metrics.items()
        },
        "server_notes": list(result.server_notes),
        "verdicts": [],
        # The raw requests (result store): integer microseconds, see store.documents.
        "records": encode_records(result.run),
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
        "note": verdict.describe() if verdict.measured is None or verdict.inconclusive
        else None,
        # What --llmperf-inconclusive made of an inconclusive verdict: fail, warn or pass.
        "inconclusive_policy": verdict.inconclusive_policy if verdict.inconclusive else None,
    }



def comparison_entry(comparison: Comparison, baseline: str) -> dict[str, Any]:
    """A test's comparison with the baseline (named ``baseline``), for the reports and the
    result document."""
    return {
        "baseline": baseline,
        "baseline_engine": comparison.baseline_engine,
        "current_engine": comparison.current_engine,
        "baseline_windows": comparison.baseline_windows,
        "current_windows": comparison.current_windows,
        "hardware_note": comparison.hardware_note,
        "cross_check": comparison.cross_check,
        "missing": None,
        "rows": [{
            "metric": row.metric,
            "unit": row.unit,
            "baseline": _rounded(row.baseline),
            "current": _rounded(row.current),
            "change": _rounded(row.change),
            "low": _rounded(row.low),
            "high": _rounded(row.high),
            "verdict": row.verdict,
            "tolerance": _rounded(row.tolerance),
            "gate": row.gate.text if row.gate else None,
            "gate_origin": row.gate.origin if row.gate else None,
            "failed": row.failed,
            "needed": row.needed,
            "note": row.note,
        } for row in comparison.rows],
    }


def load_row(result: PerfResult) -> dict[str, Any]:
    """One load of a sweep or a capacity search: the figures its table and charts show."""
    value = result.metrics.value
    return {
        "load": result.shape.load,
        "label": result.shape.label,
        "requests": len(result.run.records),
        "duration_s": _rounded(result.run.duration_s),
        "ttft_ms_p95": _rounded(value("ttft_ms", "p95")),
        "tpot_ms_p95": _rounded(value("tpot_ms", "p95")),
        "decode_tokens_per_s_mean": _rounded(value("decode_tokens_per_s", "mean")),
        "output_token_throughput": _rounded(value("output_token_throughput")),
        "request_throughput": _rounded(value("request_throughput")),
        "error_rate": _rounded(value("error_rate")),
        "overload": result.overload,
        "stopped_early": result.run.stopped_early,
    }


def _served(result: PerfResult) -> dict[str, Any]:
    served = result.served
    return {"backend": served.backend, "model": served.model, "engine": served.engine}


def _sweep_rows(sweep: SweepResult) -> list[dict[str, Any]]:
    rows = [load_row(point) for point in sweep.points]
    if sweep.values is not None:  # a prefill sweep: the axis is the prompt's length
        for row, value, point in zip(rows, sweep.values, sweep.points, strict=True):
            row.update(load=value, label=f"{value:g} input tokens, {point.shape.label}",
                       ttft_ms_median=_rounded(point.metrics.value("ttft_ms", "median")))
    return rows


def sweep_entry(sweep: SweepResult, chart_png: Path | None, calls: list[int],
                slo_lines: dict[str, float]) -> dict[str, Any]:
    """A sweep's table and chart; its points' windows are entries of their own (``calls``)."""
    return {
        "kind": "sweep",
        **_served(sweep.points[0]),
        "dimension": sweep.dimension,
        "calls": calls,
        "rows": _sweep_rows(sweep),
        "slo_lines": slo_lines,
        "chart_png": str(chart_png) if chart_png else None,
        "verdicts": [],
    }


def prefix_cache_entry(result: PrefixCacheResult) -> dict[str, Any]:
    """The cache comparison: both passes' rows and the gain (their windows are entries too)."""
    rows = []
    for name, point in (("first ask (nothing cached)", result.cold),
                        ("second ask (document cached)", result.warm)):
        cache = prompt_cache_entry(point.run.records, about_caching=True)
        rows.append({**load_row(point), "label": name,
                     "ttft_ms_median": _rounded(point.metrics.value("ttft_ms", "median")),
                     "cached_share": _rounded(cache["cached_tokens"] / cache["prompt_tokens"])
                     if cache and cache["prompt_tokens"] else None})
    return {
        "kind": "prefix_cache",
        **_served(result.cold),
        "dimension": "pass",
        "document_tokens": result.document_tokens,
        "ttft_gain": _rounded(result.ttft_gain),
        "warm_cached_share": _rounded(result.warm_cached_share),
        "summary": result.summary(),
        "rows": rows,
        "verdicts": [],
    }


def capacity_entry(capacity: CapacityResult, chart_png: Path | None,
                   slo_lines: dict[str, float]) -> dict[str, Any]:
    """A capacity search: the headline figures, how sure they are, and every probe."""
    first = capacity.probes[0].result
    rows = []
    for probe in capacity.probes:
        row = load_row(probe.result) if probe.result is not None else {"load": probe.load}
        rows.append({**row, "passed": probe.passed, "broke": list(probe.broke),
                     "goodput": _rounded(probe.goodput), "headroom": _rounded(probe.headroom)})
    return {
        "kind": "capacity",
        **(_served(first) if first is not None else {}),
        "dimension": capacity.dimension,
        "unit": capacity.unit,
        "metric": capacity.metric,
        "capacity": capacity.capacity,
        "first_failing": capacity.first_failing,
        "goodput": _rounded(capacity.goodput),
        "boundary": capacity.boundary,
        "broke_first": list(capacity.broke_first),
        "summary": capacity.summary,
        "stop_reason": capacity.stop_reason,
        "elapsed_s": round(capacity.elapsed_s, 1),
        "budget_s": capacity.budget_s,
        "shape": first.shape.describe() if first is not None else None,
        "rows": rows,
        "slo_lines": slo_lines,
        "chart_png": str(chart_png) if chart_png else None,
        "verdicts": [],
    }

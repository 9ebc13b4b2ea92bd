"""Holding results to their SLOs: the verdicts of a window or a capacity search, and the lines
that say why a window failed (missed SLOs, overload, untrustworthy numbers, what stopped it,
the failed requests)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pytest_llmperf.results.capacity import CapacityResult
from pytest_llmperf.results.errors import error_summary
from pytest_llmperf.results.goodput import GOODPUT, goodput_figures, no_goodput_reason
from pytest_llmperf.results.metric_names import NOT_STREAMED, STREAMED_ONLY
from pytest_llmperf.results.metrics import ENGINE, GPU_METRICS, RESOURCES
from pytest_llmperf.results.server_families import family_of, is_server_metric, server_value
from pytest_llmperf.results.slo import Verdict, evaluate, failure_message
from pytest_llmperf.results.thresholds import Check
from pytest_llmperf.results.window import WindowResult

__all__ = ["capacity_problems", "judge_capacity", "judge_window", "window_problems"]


def judge_window(window: WindowResult, checks: Sequence[Check], *, require_gpu: bool = False,
                 inconclusive: str = "warn") -> tuple[Verdict, ...]:
    """The verdicts of one measured window: a resource it could not measure is skipped with
    the reason (failed, with ``require_gpu``, for a GPU metric); a percentile its sample
    cannot support is ``inconclusive`` (``inconclusive`` says whether that fails)."""
    unmeasured = ({name: "no telemetry was taken for this result" for name in RESOURCES}
                  if window.resources is None else window.resources.unmeasured_reasons())
    if window.served.startup_s is None:
        unmeasured["startup_s"] = (f"{window.served.description} was not launched by this "
                                   "session: its startup was not seen")
    if window.served.first_ttft_ms is None:
        unmeasured["first_ttft_ms"] = (f"{window.served.description} was not launched by this "
                                       "session: its first request was not seen")
    if window.metrics.value("embedded_inputs_per_s") is not None:
        unmeasured.update({name: NOT_STREAMED for name in STREAMED_ONLY})
    # Goodput: the requests that met every per-request SLO held here (results.goodput).
    no_goodput = no_goodput_reason(window.run, checks)
    if no_goodput is not None:
        unmeasured.update({name: no_goodput for name in GOODPUT})
    # The engine's own figures (server.NAME), where its metrics endpoint gave them.
    engine = {f"server.{name}": value for name, value in (window.server_metrics or {}).items()
              if f"server.{name}" in ENGINE}
    why = "; ".join(window.server_notes) or "the engine's metrics did not give it"
    unmeasured.update({name: (f"{window.served.description} has no metrics endpoint"
                              if window.server_metrics is None else why)
                       for name in ENGINE if name not in engine})
    metrics = window.metrics.with_scalars({**goodput_figures(window.run, checks), **engine,
                                           **_server_values(window, checks, unmeasured)})
    # A window sized by its SLOs is judged at its looks' confidence (results.sequential).
    confidence = 0.95 if window.sizing is None else window.sizing.confidence
    return evaluate(metrics, checks, unmeasured=unmeasured,
                    required=GPU_METRICS if require_gpu else (), inconclusive=inconclusive,
                    confidence=confidence)


def _server_values(window: WindowResult, checks: Sequence[Check],
                   unmeasured: dict[str, str]) -> dict[str, float]:
    """The value of each ``server[NAME].STAT`` SLO over the window's metrics URLs, by its key;
    why not in ``unmeasured`` (under the same key)."""
    values = {}
    for check in checks:
        if not is_server_metric(check.metric) or check.statistic is None:
            continue
        value, why = server_value(window.server_families, family_of(check.metric),
                                  check.statistic)
        if value is not None:
            values[check.key] = value
        else:
            unmeasured[check.key] = why or "not measured"
    return values


def window_problems(window: WindowResult, verdicts: Sequence[Verdict], *,
                    strict_validity: bool = False, number: int = 1, of: int = 1) -> list[str]:
    """Why this window fails its test (empty: it passes): each missed SLO, an overload (its
    latencies measure the window's length, not the server), and with ``strict_validity`` a
    window whose numbers cannot be trusted; after a miss, what may explain it.  ``number`` of
    ``of`` names the window among a load's repeats."""
    context = window.context + (f", window {number} of {of}" if of > 1 else "")
    lines = []
    if window.overload:
        lines.append(f"{context}: {window.overload}")
    marks = "; ".join(f"{mark}: {', '.join(crossed)}"
                      for mark, crossed in window.validity_marks.items())
    if marks and strict_validity:
        lines.append(f"{context}: the numbers cannot be trusted (--llmperf-strict-validity): "
                     f"{marks}")
    message = failure_message(verdicts, context)
    if message:
        lines.append(message)
        if marks and not strict_validity:  # why the numbers may be off
            lines.append(f"{context}: note: {marks}")
        if window.run.stopped_early:  # e.g. the deadline cut it
            lines.append(f"{context}: stopped early: {window.run.stopped_early}")
        errors = error_summary(window.run.records)
        if errors:
            lines.append(errors)
    return lines


def judge_capacity(search: CapacityResult, checks: Sequence[Check]) -> tuple[Verdict, ...]:
    """The verdicts of a capacity search's results (``capacity_max_concurrency >= 8``).  A
    limit a disturbed search (``search.disturbed``) did not meet is neither met nor missed:
    skipped, with why."""
    verdicts = evaluate(search.metrics(), checks, unmeasured=search.unmeasured())
    if not search.disturbed:
        return verdicts
    return tuple(v if v.met or v.measured is None else dataclasses.replace(
        v, skipped=True, unmeasured_reason=f"measured {v.measured:g} by a search that was "
                                           f"{search.disturbed}") for v in verdicts)


def capacity_problems(search: CapacityResult, verdicts: Sequence[Verdict],
                      description: str) -> list[str]:
    message = failure_message(verdicts, f"{search.summary}, {description}")
    return [message] if message else []

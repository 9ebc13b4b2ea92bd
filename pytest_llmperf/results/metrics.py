"""Metric definitions: pure functions from request records to numbers.

Each metric is defined here once; docs/metrics.md repeats these definitions word for word.
They match vLLM's and SGLang's serving benchmarks and MLPerf:

- TTFT (``ttft_ms``): time of the first streamed token - time the request was sent.
- E2EL (``e2el_ms``): time of the last streamed token - time the request was sent.
- TPOT (``tpot_ms``): (E2EL - TTFT) / (output_tokens - 1), per request with output_tokens > 1
  whose tokens came in more than one streamed chunk (else the client saw no decode to time;
  such requests are counted in ``untimed_decodes``).
- prefill speed (``prefill_tokens_per_s``): input tokens / TTFT, per request (as a user sees it).
- ITL (``itl_ms``): every gap between consecutive streamed token chunks, pooled over requests.
- per-user decode speed (``decode_tokens_per_s``): 1 / TPOT, per request, in tokens/s (the
  same requests as TPOT).
- request throughput (``request_throughput``): completed requests / measured window (req/s).
- output throughput (``output_token_throughput``): sum(output_tokens) / measured window.
- total throughput (``total_token_throughput``): sum(input + output tokens) / measured window.
- error rate (``error_rate``): failed requests / all requests in the window.
- error counts (``errors.<kind>``): failed requests of each category, e.g. ``errors.timeout``
  (:mod:`pytest_llmperf.results.errors` names the categories).

Open loop only (each request has a scheduled time; see :mod:`pytest_llmperf.results.pacing`
for ``offered_rate``, ``send_rate`` and ``queue_growth``):

- schedule slip (``schedule_slip_ms``): time sent - time scheduled, over all requests: the wait
  behind the shape's ``max_concurrency`` plus the client's own lateness.
- ``ttft_from_schedule_ms`` and ``e2el_from_schedule_ms``: TTFT and E2EL measured from the
  scheduled time instead of the send time (MLPerf's way): what a user arriving on schedule
  waited, including any wait in the client.  ``ttft_ms`` and ``e2el_ms`` stay measured from
  the send (the server's view, as vLLM's benchmark reports them); an SLO names whichever it
  means.

The answer a user reads (reasoning models think first; for any other model the answer is the
whole stream and these equal TTFT, E2EL and decode speed; see
:mod:`pytest_llmperf.clients.reasoning`):

- reasoning tokens (``reasoning_tokens``) and answer tokens (``answer_tokens`` = output tokens
  - reasoning tokens), per request.
- time to first answer token (``time_to_answer_ms``): first streamed answer token - time sent.
  TTFT stays the first token of any kind, reasoning included.
- time to the complete answer (``answer_e2el_ms``): last answer token - time sent.
- answer decode speed (``answer_decode_tokens_per_s``): (answer tokens - 1) / (last answer
  token - first answer token), per request with 2+ answer tokens in 2+ reads.
- ``unanswered``: completed requests that reasoned and never answered (the length ran out).

Prefix cache (where the server says: OpenAI ``prompt_tokens_details.cached_tokens``, llama.cpp
``timings.cache_n``): ``cached_tokens`` per request, and ``cache_hit_rate`` = cached prompt
tokens / prompt tokens over the requests the server said it for.

Embeddings (clients.embeddings): a request answers once, streaming nothing, so it has no
TTFT, TPOT, ITL or decode speed; its ``e2el_ms`` runs from the send to the answer's last byte.
``embedded_inputs_per_s`` = vectors returned (rerank: documents scored) by completed requests
/ measured window, and
``input_token_throughput`` = their input tokens / measured window (both only in windows with
embeddings requests).

Latency metrics are taken over completed requests only.  Statistics: mean, median, min, max,
stdev (population, as numpy's default) and any percentile ``pNN`` (linear interpolation between
closest ranks, as ``numpy.percentile``'s default).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pytest_llmperf.results.answer import (
    answer_decode_speed,
    answer_e2el_ms,
    answer_span_ns,
    cache_hit_rate,
    time_to_answer_ms,
)
from pytest_llmperf.results.errors import error_counts, metric_name
from pytest_llmperf.results.metric_names import (
    CAPACITY,
    DISTRIBUTIONS,
    ENGINE,
    GPU_METRICS,
    REPORTED_STATISTICS,
    RESOURCES,
    SCALARS,
    STREAMED_ONLY,
    MetricInfo,
    metric_info,
)
from pytest_llmperf.results.pacing import pacing_scalars
from pytest_llmperf.results.percentiles import parse_statistic, percentile, statistic
from pytest_llmperf.results.records import LoadRun, RequestRecord

__all__ = [
    "CAPACITY",
    "DISTRIBUTIONS",
    "ENGINE",
    "GPU_METRICS",
    "PER_REQUEST",
    "REPORTED_STATISTICS",
    "RESOURCES",
    "SCALARS",
    "STREAMED_ONLY",
    "MetricInfo",
    "RunMetrics",
    "metric_info",
    "parse_statistic",
    "percentile",
    "statistic",
    "summarize",
]

_NS_PER_MS = 1e6


# --- per-request definitions -------------------------------------------------------------


def ttft_ms(record: RequestRecord) -> float:
    return (record.chunk_ns[0] - record.send_ns) / _NS_PER_MS


def e2el_ms(record: RequestRecord) -> float:
    return (record.last_byte_ns - record.send_ns) / _NS_PER_MS


def tpot_ms(record: RequestRecord) -> float | None:
    """None when the client saw no decode to time: a single-token answer, or one whose tokens
    all arrived in one network read (E2EL = TTFT; its TPOT would read 0, its speed infinite)."""
    if record.output_tokens < 2 or record.chunk_ns[-1] == record.chunk_ns[0]:
        return None
    return (e2el_ms(record) - ttft_ms(record)) / (record.output_tokens - 1)


def from_schedule_ms(record: RequestRecord, time_ns: int) -> float | None:
    """``time_ns`` less the request's scheduled time; None in a closed loop."""
    if record.scheduled_ns is None:
        return None
    return (time_ns - record.scheduled_ns) / _NS_PER_MS


def itl_ms(record: RequestRecord) -> list[float]:
    chunks = record.chunk_ns
    return [(b - a) / _NS_PER_MS for a, b in itertools.pairwise(chunks)]


def _streamed(value: Callable[[RequestRecord], float | None]
              ) -> Callable[[RequestRecord], float | None]:
    """``value`` of a request that streamed its answer; None for one that did not (an
    embeddings request has no first token)."""
    return lambda record: value(record) if record.chunk_ns else None


def _decode_speed(record: RequestRecord) -> float | None:
    tpot = tpot_ms(record)
    return None if tpot is None else 1000.0 / tpot


# A completed request's own value of each per-request distribution (goodput counts the
# requests whose every value meets its SLO); None where the request has none.
PER_REQUEST: Mapping[str, Callable[[RequestRecord], float | None]] = MappingProxyType(
    {
        "ttft_ms": _streamed(ttft_ms),
        "tpot_ms": _streamed(tpot_ms),
        "e2el_ms": e2el_ms,
        "decode_tokens_per_s": _streamed(_decode_speed),
        "ttft_from_schedule_ms": _streamed(lambda r: from_schedule_ms(r, r.chunk_ns[0])),
        "e2el_from_schedule_ms": lambda r: from_schedule_ms(r, r.last_byte_ns),
        "time_to_answer_ms": _streamed(time_to_answer_ms),
        "answer_e2el_ms": _streamed(answer_e2el_ms),
        "answer_decode_tokens_per_s": _streamed(answer_decode_speed),
    }
)


# --- aggregation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunMetrics:
    """Every metric of one measured window: raw distributions plus whole-run scalars."""

    distributions: Mapping[str, tuple[float, ...]]
    scalars: Mapping[str, float]
    output_token_sources: tuple[str, ...]

    def with_scalars(self, scalars: Mapping[str, float]) -> RunMetrics:
        """These metrics plus whole-run figures from outside the run (``startup_s``)."""
        return RunMetrics(self.distributions, MappingProxyType({**self.scalars, **scalars}),
                          self.output_token_sources)

    def with_resources(self, resources: Mapping[str, float]) -> RunMetrics:
        """These metrics plus the window's resource figures (telemetry)."""
        known = {name: value for name, value in resources.items() if name in RESOURCES}
        return RunMetrics(self.distributions, MappingProxyType({**self.scalars, **known}),
                          self.output_token_sources)

    def value(self, metric: str, stat: str | None = None) -> float | None:
        """``metric`` (with ``stat`` for a distribution); None when nothing measured it."""
        if metric in SCALARS or metric in RESOURCES or metric in CAPACITY or metric in ENGINE:
            return self.scalars.get(metric)
        if metric.startswith("server["):  # a server's family, judged with its statistic
            return self.scalars.get(f"{metric}.{stat}")
        values = self.distributions[metric]
        if not values:
            return None
        return statistic(values, stat or "mean")

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Reported statistics of every distribution, for tables and junit properties."""
        return {
            name: {stat: self.value(name, stat) for stat in REPORTED_STATISTICS}
            for name in DISTRIBUTIONS
        }


def _pooled(records: Iterable[RequestRecord], per_request: Callable[[RequestRecord], list[float]]
            ) -> tuple[float, ...]:
    return tuple(v for r in records for v in per_request(r))


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)


def _defined(values: Iterable[float | None]) -> tuple[float, ...]:
    return tuple(v for v in values if v is not None)


def summarize(run: LoadRun) -> RunMetrics:
    """All metrics of ``run``; latency metrics over completed requests only."""
    done = [r for r in run.records if r.ok]
    streamed = [r for r in done if r.chunk_ns]  # all but embeddings requests
    tpots = [t for t in (tpot_ms(r) for r in streamed) if t is not None]
    duration = run.duration_s
    output_total = sum(r.output_tokens for r in done)
    input_total = sum(r.input_tokens or 0 for r in done)
    total = len(run.records)

    def per_second(amount: float) -> float:
        return amount / duration if duration > 0 else 0.0

    distributions = {
        "ttft_ms": tuple(ttft_ms(r) for r in streamed),
        "tpot_ms": tuple(tpots),
        "itl_ms": _pooled(streamed, itl_ms),
        "e2el_ms": tuple(e2el_ms(r) for r in done),
        # Over the same requests as tpot_ms: chunk times differ, so every TPOT is > 0.
        "decode_tokens_per_s": tuple(1000.0 / t for t in tpots),
        "output_tokens": tuple(float(r.output_tokens) for r in done),
        "input_tokens": tuple(float(r.input_tokens) for r in done if r.input_tokens is not None),
        "prefill_tokens_per_s": tuple(r.input_tokens / (ttft_ms(r) / 1000) for r in streamed
                                      if r.input_tokens and ttft_ms(r) > 0),
        "schedule_slip_ms": _defined(from_schedule_ms(r, r.send_ns) for r in run.records),
        "ttft_from_schedule_ms": _defined(from_schedule_ms(r, r.chunk_ns[0])
                                          for r in streamed),
        "e2el_from_schedule_ms": _defined(from_schedule_ms(r, r.last_byte_ns) for r in done),
        "reasoning_tokens": _defined(_float(r.reasoning_tokens) for r in done),
        "answer_tokens": _defined(_float(r.answer_tokens) for r in done),
        "time_to_answer_ms": _defined(time_to_answer_ms(r) for r in streamed),
        "answer_e2el_ms": _defined(answer_e2el_ms(r) for r in streamed),
        "answer_decode_tokens_per_s": _defined(answer_decode_speed(r) for r in streamed),
        "cached_tokens": _defined(_float(r.cached_tokens) for r in done),
    }
    scalars = {
        "request_throughput": per_second(len(done)),
        "output_token_throughput": per_second(output_total),
        "total_token_throughput": per_second(output_total + input_total),
        "error_rate": (total - len(done)) / total if total else 0.0,
        "completed": float(len(done)),
        "failed": float(total - len(done)),
        "duration_s": duration,
        "unanswered": float(sum(answer_span_ns(r) is None for r in streamed)),
        "untimed_decodes": float(sum(r.output_tokens > 1 and tpot_ms(r) is None
                                     for r in done)),
        **pacing_scalars(run),
        **{metric_name(kind): float(n) for kind, n in error_counts(run.records).items()},
    }
    embedded = sum(r.embedded_inputs for r in done)
    if embedded:  # an embeddings window (absent, never 0, for generation)
        scalars["embedded_inputs_per_s"] = per_second(embedded)
        scalars["input_token_throughput"] = per_second(input_total)
    hit_rate = cache_hit_rate(done)
    if hit_rate is not None:  # absent, never 0, where no server said
        scalars["cache_hit_rate"] = hit_rate
    sources = sorted({r.output_token_source.value for r in done if r.output_token_source})
    return RunMetrics(
        distributions=MappingProxyType(distributions),
        scalars=MappingProxyType(scalars),
        output_token_sources=tuple(sources),
    )

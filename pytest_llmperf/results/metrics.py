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
from pytest_llmperf.results.errors import DESCRIPTIONS as ERROR_DESCRIPTIONS
from pytest_llmperf.results.errors import error_counts, metric_name
from pytest_llmperf.results.pacing import pacing_scalars
from pytest_llmperf.results.percentiles import parse_statistic, percentile, statistic
from pytest_llmperf.results.records import LoadRun, RequestRecord

__all__ = [
    "CAPACITY",
    "DISTRIBUTIONS",
    "GPU_METRICS",
    "PER_REQUEST",
    "REPORTED_STATISTICS",
    "RESOURCES",
    "SCALARS",
    "MetricInfo",
    "RunMetrics",
    "metric_info",
    "parse_statistic",
    "percentile",
    "statistic",
    "summarize",
]

_NS_PER_MS = 1e6


@dataclass(frozen=True)
class MetricInfo:
    unit: str
    higher_is_better: bool
    description: str


# Per-request distributions: referenced as "name.statistic" (e.g. "tpot_ms.p95").
DISTRIBUTIONS: Mapping[str, MetricInfo] = MappingProxyType(
    {
        "ttft_ms": MetricInfo("ms", False, "time to first token"),
        "tpot_ms": MetricInfo("ms", False, "time per output token after the first"),
        "itl_ms": MetricInfo("ms", False, "gap between consecutive streamed chunks"),
        "e2el_ms": MetricInfo("ms", False, "end-to-end latency to the last token"),
        "decode_tokens_per_s": MetricInfo("tok/s", True, "per-user decode speed, 1/TPOT"),
        "output_tokens": MetricInfo("tok", True, "output tokens per request"),
        "input_tokens": MetricInfo("tok", False, "input tokens per request"),
        "prefill_tokens_per_s": MetricInfo("tok/s", True, "input tokens / TTFT"),
        "schedule_slip_ms": MetricInfo("ms", False,
                                       "open loop: send time - scheduled time"),
        "ttft_from_schedule_ms": MetricInfo("ms", False,
                                            "open loop: first token - scheduled time"),
        "e2el_from_schedule_ms": MetricInfo("ms", False,
                                            "open loop: last token - scheduled time"),
        "reasoning_tokens": MetricInfo("tok", False, "reasoning tokens per request"),
        "answer_tokens": MetricInfo("tok", True, "answer tokens per request (no reasoning)"),
        "time_to_answer_ms": MetricInfo("ms", False, "time to the first answer token"),
        "answer_e2el_ms": MetricInfo("ms", False, "time to the complete answer"),
        "answer_decode_tokens_per_s": MetricInfo("tok/s", True, "answer decode speed"),
        "cached_tokens": MetricInfo("tok", True,
                                    "prompt tokens served from the prefix cache"),
    }
)

# Whole-run numbers: referenced by bare name (e.g. "error_rate").
SCALARS: Mapping[str, MetricInfo] = MappingProxyType(
    {
        "request_throughput": MetricInfo("req/s", True, "completed requests per second"),
        "output_token_throughput": MetricInfo("tok/s", True, "output tokens per second"),
        "total_token_throughput": MetricInfo("tok/s", True, "input+output tokens per second"),
        "error_rate": MetricInfo("", False, "failed / all requests"),
        "completed": MetricInfo("req", True, "completed requests"),
        "failed": MetricInfo("req", False, "failed requests"),
        "duration_s": MetricInfo("s", False, "length of the measured window"),
        "offered_rate": MetricInfo("req/s", True, "open loop: the schedule's request rate"),
        "send_rate": MetricInfo("req/s", True, "open loop: the rate requests were sent at"),
        "queue_growth": MetricInfo("s/s", False,
                                   "open loop: growth of the wait for a first token over "
                                   "the window"),
        "unanswered": MetricInfo("req", False,
                                 "completed requests that reasoned and never answered"),
        "cache_hit_rate": MetricInfo("", True,
                                     "cached prompt tokens / prompt tokens, where reported"),
        "untimed_decodes": MetricInfo(
            "req", False, "completed answers of 2+ tokens that arrived in one network read: "
            "no decode time to see, so not in tpot_ms or decode_tokens_per_s"),
        **{metric_name(kind): MetricInfo("req", False, text)
           for kind, text in ERROR_DESCRIPTIONS.items()},
    }
)

# Resource use over the measured window (pytest_llmperf.observe.telemetry), referenced by bare name
# like SCALARS.  Absent, never zero, when not measured (no GPU, an attached server).
RESOURCES: Mapping[str, MetricInfo] = MappingProxyType(
    {
        "gpu_memory_peak_mib": MetricInfo("MiB", False,
                                          "sum over GPUs of each GPU's peak memory used"),
        "gpu_process_memory_peak_mib": MetricInfo(
            "MiB", False, "sum over GPUs of the server process tree's peak GPU memory"),
        "gpu_util_mean": MetricInfo("%", True, "mean over GPUs of each GPU's mean utilisation"),
        "gpu_power_mean_w": MetricInfo("W", False, "sum over GPUs of each GPU's mean power"),
        "energy_j": MetricInfo("J", False, "energy all GPUs used in the window"),
        "energy_j_per_token": MetricInfo("J/tok", False, "energy_j / output tokens"),
        "server_cpu_mean_pct": MetricInfo("%", False,
                                          "server process tree CPU, 100 = one core busy"),
        "server_cpu_peak_pct": MetricInfo("%", False, "peak of the same"),
        "server_rss_mean_mib": MetricInfo("MiB", False,
                                          "server process tree resident memory, summed"),
        "server_rss_peak_mib": MetricInfo("MiB", False, "peak of the same"),
        "system_cpu_mean_pct": MetricInfo("%", False, "whole machine CPU, 100 = every core"),
        "system_memory_peak_mib": MetricInfo("MiB", False,
                                             "whole machine memory used (total - available)"),
    }
)

# The resource metrics only an NVIDIA GPU gives (what --llmperf-require-gpu requires).
GPU_METRICS: tuple[str, ...] = tuple(name for name in RESOURCES
                                     if name.startswith(("gpu_", "energy_")))

# A capacity search's results (searches.capacity), referenced by bare name in a capacity test's
# SLOs (``capacity_max_concurrency >= 8``); no measured window has them.
CAPACITY: Mapping[str, MetricInfo] = MappingProxyType(
    {
        "capacity_max_concurrency": MetricInfo("users", True, "most users every SLO held at"),
        "capacity_max_rate": MetricInfo("req/s", True, "highest rate every SLO held at"),
        "capacity_goodput": MetricInfo("req/s", True, "goodput at the capacity (probe.goodput)"),
    }
)

# The statistics shown in reports for every distribution.
REPORTED_STATISTICS: tuple[str, ...] = (
    "mean", "median", "p90", "p95", "p99", "min", "max", "stdev",
)

def metric_info(name: str) -> MetricInfo:
    """The unit, direction and description of any metric name (KeyError if unknown)."""
    for table in (DISTRIBUTIONS, SCALARS, RESOURCES, CAPACITY):
        if name in table:
            return table[name]
    raise KeyError(name)


# --- per-request definitions -------------------------------------------------------------


def ttft_ms(record: RequestRecord) -> float:
    return (record.chunk_ns[0] - record.send_ns) / _NS_PER_MS


def e2el_ms(record: RequestRecord) -> float:
    return (record.chunk_ns[-1] - record.send_ns) / _NS_PER_MS


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


def _decode_speed(record: RequestRecord) -> float | None:
    tpot = tpot_ms(record)
    return None if tpot is None else 1000.0 / tpot


# A completed request's own value of each per-request distribution (goodput counts the
# requests whose every value meets its SLO); None where the request has none.
PER_REQUEST: Mapping[str, Callable[[RequestRecord], float | None]] = MappingProxyType(
    {
        "ttft_ms": ttft_ms,
        "tpot_ms": tpot_ms,
        "e2el_ms": e2el_ms,
        "decode_tokens_per_s": _decode_speed,
        "ttft_from_schedule_ms": lambda r: from_schedule_ms(r, r.chunk_ns[0]),
        "e2el_from_schedule_ms": lambda r: from_schedule_ms(r, r.chunk_ns[-1]),
        "time_to_answer_ms": time_to_answer_ms,
        "answer_e2el_ms": answer_e2el_ms,
        "answer_decode_tokens_per_s": answer_decode_speed,
    }
)


# --- aggregation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunMetrics:
    """Every metric of one measured window: raw distributions plus whole-run scalars."""

    distributions: Mapping[str, tuple[float, ...]]
    scalars: Mapping[str, float]
    output_token_sources: tuple[str, ...]

    def with_resources(self, resources: Mapping[str, float]) -> RunMetrics:
        """These metrics plus the window's resource figures (telemetry)."""
        known = {name: value for name, value in resources.items() if name in RESOURCES}
        return RunMetrics(self.distributions, MappingProxyType({**self.scalars, **known}),
                          self.output_token_sources)

    def value(self, metric: str, stat: str | None = None) -> float | None:
        """``metric`` (with ``stat`` for a distribution); None when nothing measured it."""
        if metric in SCALARS or metric in RESOURCES or metric in CAPACITY:
            return self.scalars.get(metric)
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
    tpots = [t for t in (tpot_ms(r) for r in done) if t is not None]
    duration = run.duration_s
    output_total = sum(r.output_tokens for r in done)
    input_total = sum(r.input_tokens or 0 for r in done)
    total = len(run.records)

    def per_second(amount: float) -> float:
        return amount / duration if duration > 0 else 0.0

    distributions = {
        "ttft_ms": tuple(ttft_ms(r) for r in done),
        "tpot_ms": tuple(tpots),
        "itl_ms": _pooled(done, itl_ms),
        "e2el_ms": tuple(e2el_ms(r) for r in done),
        # Over the same requests as tpot_ms: chunk times differ, so every TPOT is > 0.
        "decode_tokens_per_s": tuple(1000.0 / t for t in tpots),
        "output_tokens": tuple(float(r.output_tokens) for r in done),
        "input_tokens": tuple(float(r.input_tokens) for r in done if r.input_tokens is not None),
        "prefill_tokens_per_s": tuple(r.input_tokens / (ttft_ms(r) / 1000) for r in done
                                      if r.input_tokens and ttft_ms(r) > 0),
        "schedule_slip_ms": _defined(from_schedule_ms(r, r.send_ns) for r in run.records),
        "ttft_from_schedule_ms": _defined(from_schedule_ms(r, r.chunk_ns[0]) for r in done),
        "e2el_from_schedule_ms": _defined(from_schedule_ms(r, r.chunk_ns[-1]) for r in done),
        "reasoning_tokens": _defined(_float(r.reasoning_tokens) for r in done),
        "answer_tokens": _defined(_float(r.answer_tokens) for r in done),
        "time_to_answer_ms": _defined(time_to_answer_ms(r) for r in done),
        "answer_e2el_ms": _defined(answer_e2el_ms(r) for r in done),
        "answer_decode_tokens_per_s": _defined(answer_decode_speed(r) for r in done),
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
        "unanswered": float(sum(answer_span_ns(r) is None for r in done)),
        "untimed_decodes": float(sum(r.output_tokens > 1 and tpot_ms(r) is None
                                     for r in done)),
        **pacing_scalars(run),
        **{metric_name(kind): float(n) for kind, n in error_counts(run.records).items()},
    }
    hit_rate = cache_hit_rate(done)
    if hit_rate is not None:  # absent, never 0, where no server said
        scalars["cache_hit_rate"] = hit_rate
    sources = sorted({r.output_token_source.value for r in done if r.output_token_source})
    return RunMetrics(
        distributions=MappingProxyType(distributions),
        scalars=MappingProxyType(scalars),
        output_token_sources=tuple(sources),
    )

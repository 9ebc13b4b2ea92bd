"""Our client's error at long contexts, beside a short one.

    python benchmarks/long_context.py [--requests N]

vLLM's benchmark client once read streams through a 64 KB buffer and lost 10x throughput above
50k-token contexts (vllm #39963): a client can be right on short prompts and wrong on long
ones.  This sends prompts of about 1k, 32k and 64k tokens (4 characters a token: request
bodies of 4 KB to 256 KB) and answers of 256 and 32768 tokens to the fast measuring-instrument
stub (tests/fakes/fast_stub.py, its own process, on uvloop), which stamps when it read each
request (R) and wrote its first (F) and last token (L) on the machine's monotonic clock, one
user at a time, and prints per case:

- ``body KB``: the request body our client wrote;
- ``TTFT err``: what the client added to the time to first token, mean of its TTFT - (F - R),
  and the worst request's (the body's transfer is in it: the client stamps the send when the
  body is written, the stub its arrival when the last byte is read);
- ``TPOT err``: the client's mean TPOT against the stub's, (L - F) / (tokens - 1), in %;
- the output tokens a second the client read.

The stub writes the first token 100 ms after the request and then one every 0.2 ms, so a
32768-token answer streams for 6.6 s; nothing here is a model's speed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fidelity import stamped
from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import Endpoint, build_payload
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.results.prompt_origin import PromptOrigin
from tests.fakes.stub_process import FAST_STUB, running_stub

FIRST_MS, TOKEN_MS = 100.0, 0.2
CHARS_PER_TOKEN = 4
CASES: tuple[tuple[int, int], ...] = (
    (1024, 256), (32768, 256), (65536, 256), (1024, 32768), (65536, 32768))


class LongPrompts:
    """Prompts of about ``tokens`` tokens (``CHARS_PER_TOKEN`` characters each), each unique."""

    about_caching = False

    def __init__(self, tokens: int) -> None:
        self.text = "lorem " * (tokens * CHARS_PER_TOKEN // 6)
        self.numbers = itertools.count()

    def prepare(self, count: int) -> None:
        """Nothing to make ahead."""

    def next_prompt(self) -> Prompt:
        return Prompt(f"[{next(self.numbers)}] {self.text}")

    def describe(self) -> PromptOrigin:
        return PromptOrigin("long", 0, "")


def measure(url: str, prompt_tokens: int, answer_tokens: int, requests: int) -> str:
    served = ServedModel("openai", "stub", Endpoint(url, "stub"), engine="stub")
    source = LongPrompts(prompt_tokens)
    assert served.endpoint is not None
    body = len(json.dumps(build_payload(served.endpoint, source.next_prompt(), answer_tokens)))
    result = run_load(served, source, users=1, requests=requests, warmup=1,
                      max_tokens=answer_tokens)
    records, stamps = stamped(result, answer_tokens,
                              f"{prompt_tokens} prompt tokens, {answer_tokens} answer tokens")
    added = [(r.chunk_ns[0] - r.send_ns - (first - read)) / 1e6
             for r, (read, first, _) in zip(records, stamps, strict=True)]
    stub_tpot = fmean((last - first) / 1e6 / (answer_tokens - 1) for _, first, last in stamps)
    tpot = fmean((r.chunk_ns[-1] - r.chunk_ns[0]) / 1e6 / (answer_tokens - 1) for r in records)
    late = fmean((first - read) / 1e6 - FIRST_MS for read, first, _ in stamps)
    throughput = result.metrics.scalars["output_token_throughput"]
    return (f"{prompt_tokens:>8} {answer_tokens:>8} {body / 1024:>8.0f} {late:>10.2f} "
            f"{fmean(added):>13.2f} {max(added):>9.2f} {(tpot / stub_tpot - 1) * 100:>10.2f} "
            f"{throughput:>9.0f}")


def main(cases: Sequence[tuple[int, int]], requests: int) -> None:
    print(f"{'prompt':>8} {'answer':>8} {'body KB':>8} {'stub late':>10} "
          f"{'TTFT err ms':>13} {'worst ms':>9} {'TPOT err %':>10} {'tok/s':>9}")
    with running_stub("--first-ms", str(FIRST_MS), "--token-ms", str(TOKEN_MS), "--uvloop",
                      script=FAST_STUB) as url:
        for prompt_tokens, answer_tokens in cases:
            print(measure(url, prompt_tokens, answer_tokens, requests), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8,
                        help="measured requests per case (one user; default 8)")
    arguments = parser.parse_args()
    main(CASES, arguments.requests)

"""The trace the suite replays when the user names none (``shipped_trace.jsonl`` beside this
module), and how it was made: seeded, by this project, copied from no recording.

Its 18 requests arrive over 35.7 s: Poisson arrivals at 0.24 req/s with two bursts of 3
requests within half a second (at 10 s and at 25 s).  Their prompts share blocks as production
traffic does (Mooncake's ``hash_ids``, 512-token blocks): an application's system prompt (block
1), a document retrieved under it (block 3, after block 1), and short chats that share nothing.

Sized for 2 CPU cores (180-220 prompt tokens a second there): answers of 16-48 tokens, most
requests short chats, about 150 prompt tokens a second offered, so the prefix cache's reuse
keeps the cores from saturating between bursts.  At 0.3 req/s (the same draws 1.25x faster)
the cores were saturated: llama.cpp's slots were all busy when the shared blocks came back,
its cache served 6 % of the prompt tokens instead of 37 %, and the TTFT median read 2.9-5.1 s
instead of 0.6-0.8 s (2026-12-07, three runs each).

``python -m pytest_llmperf.prompts.shipped_trace > pytest_llmperf/prompts/shipped_trace.jsonl``
writes it again; a test checks the file is what this makes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

__all__ = ["SHIPPED_TRACE", "make_trace"]

SHIPPED_TRACE = Path(__file__).with_name("shipped_trace.jsonl")

# (hash_ids, tokens of the request's own text after its blocks), and how often: the kinds of
# request
_KINDS = (
    ((1,), (24, 64)),  # a chat under the application's system prompt
    ((1, 3), (16, 48)),  # a question about the retrieved document, under it
    ((), (48, 160)),  # a short chat with no shared prompt
)
_WEIGHTS = (2, 1, 5)

def make_trace(seed: int = 10) -> list[dict[str, object]]:
    """The shipped trace's lines, in order (timestamps in ms)."""
    rng = random.Random(seed)
    times: list[float] = []
    now = 0.0
    while now < 37.5:
        times.append(now)
        now += rng.expovariate(0.24)
    times += [at + rng.uniform(0, 0.5) for at in (10.0, 25.0) for _ in range(3)]
    lines: list[dict[str, object]] = []
    for at in sorted(times):
        hash_ids, (low, high) = rng.choices(_KINDS, _WEIGHTS)[0]
        own = rng.randint(low, high)
        line: dict[str, object] = {"timestamp": round(at * 1000),
                                   "input_length": 512 * len(hash_ids) + own,
                                   "output_length": rng.randint(16, 48)}
        if hash_ids:
            line["hash_ids"] = list(hash_ids)
        lines.append(line)
    return lines


if __name__ == "__main__":
    for entry in make_trace():
        print(json.dumps(entry))

"""Production-shaped traffic: a request trace replayed at its recorded times, each request with
its recorded prompt and answer lengths, and prompts that share the blocks the trace says they
share (so the server's prefix cache sees the trace's reuse, no more and no less).

Replays ``--llmperf-dataset trace:FILE`` when given (JSONL, Mooncake, BurstGPT or Azure CSV;
``--llmperf-trace-speed`` and ``--llmperf-trace-window`` shape the replay), and otherwise the
18-request trace the project ships (two bursts, a shared system prompt and a shared document).
A trace the server cannot keep up with fails as overloaded, with the rate it sustained.
"""

from __future__ import annotations

from pytest_llmperf import ReplayFunction, SLOChecker, Target


def test_trace(llmperf_target: Target, llmperf_replay: ReplayFunction,
               llmperf_slo: SLOChecker) -> None:
    result = llmperf_replay()
    llmperf_slo.check(result)

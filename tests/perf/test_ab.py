"""An upgrade check on one host: two builds held against each other in one session, their
windows alternating so the machine's drift falls on both alike (docs/baselines.md, "Two builds
on one host").  Runs when --llmperf-ab names the two builds, e.g.

    pytest tests/perf/test_ab.py --backend vllm --model qwen72b-gptq \\
        --llmperf-ab 'before: python=/opt/vllm-0.10/bin/python gpus=0,1;
                      after: python=/opt/vllm-0.11/bin/python gpus=2,3' \\
        --llmperf-compare-fail 'tpot_ms.p95:5%'

and is skipped otherwise.  A gate the candidate exceeds with confidence fails the test.
"""

from __future__ import annotations

from pytest_llmperf import ABFunction, Target


def test_two_builds_interleaved(llmperf_target: Target, llmperf_ab: ABFunction) -> None:
    result = llmperf_ab(users=2)
    assert len(result.side(0)) == len(result.side(1))  # both sides measured every round

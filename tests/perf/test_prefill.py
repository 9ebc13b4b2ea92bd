"""What a long prompt costs: TTFT against input length, one user, prompts of exactly 128, 512
and 2048 tokens of the model's own tokenizer (lengths the context cannot hold with their answer
are left out, and the report says so).  Each length is a measured window of its own, held to
the SLOs of [tests.test_prefill]; the report has the table and a chart of TTFT by length.

Two requests per length, each answering 8 tokens (TTFT is the point), keep the default suite
quick (a curve, not a p95 to rely on); ``llmperf_prefill(lengths=..., requests=...)`` in a
test of your own takes any size."""

from __future__ import annotations

from pytest_llmperf import PrefillFunction, SLOChecker, Target

LENGTHS = (128, 512, 2048)


def test_prefill(llmperf_target: Target, llmperf_prefill: PrefillFunction,
                 llmperf_slo: SLOChecker) -> None:
    sweep = llmperf_prefill(LENGTHS, max_tokens=8)
    llmperf_slo.check(sweep)

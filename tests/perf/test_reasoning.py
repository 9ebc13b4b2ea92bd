"""Reasoning models: the time until the answer a user can read, apart from the thinking.

Runs only for a model the catalogue marks ``reasoning = true`` (the DeepSeek-R1 distills;
your own in thresholds.toml); skipped with the reason otherwise.  One user, answers of
--llmperf-max-tokens (a reasoning model needs room to think: give it 1024 or more).
TTFT stays the first token of any kind; ``time_to_answer_ms`` is the first answer token,
``answer_e2el_ms`` the complete answer, ``answer_decode_tokens_per_s`` the answer's speed and
``unanswered`` the requests whose length ran out before an answer; [tests.test_reasoning] in
thresholds.toml holds them to SLOs.  A model marked reasoning that streamed no reasoning at all
fails: its server needs a reasoning parser (vLLM ``--reasoning-parser deepseek_r1``) or its
template does not think."""

from __future__ import annotations

import pytest

from pytest_llmperf import LoadFunction, ServedModel, SLOChecker, Target


def test_reasoning(llmperf_target: Target, llmperf_server: ServedModel, llmperf_load: LoadFunction,
                   llmperf_slo: SLOChecker) -> None:
    if not llmperf_server.reasoning:
        pytest.skip(f"{llmperf_server.model} is not a reasoning model (the catalogue marks "
                    "those reasoning = true)")
    result = llmperf_load(users=1)
    done = [r for r in result.run.records if r.ok]
    if done and not any(r.has_reasoning for r in done):
        pytest.fail(f"{llmperf_server.description} is marked as a reasoning model, but none of "
                    f"{len(done)} answers carried reasoning: serve it with a reasoning parser "
                    "or check its chat template", pytrace=False)
    llmperf_slo.check(result)

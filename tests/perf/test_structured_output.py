"""Structured output: one user asks for records that must be JSON a schema accepts (sent as
``response_format`` with a ``json_schema``, as OpenAI-compatible servers take it).  Every answer
is checked against the schema when it ends; one that does not match fails as
``invalid_output``, so ``error_rate`` holds the share that parses, and ``e2el_ms`` is the time
to a complete valid object.  Constrained decoding costs: compare its TPOT with the plain chat
tests'.  An answer's length is its object's (nothing is forced).
"""

from __future__ import annotations

from pytest_llmperf import LoadFunction, Settings, SLOChecker, Target
from pytest_llmperf.prompts.structured import StructuredPrompts

REQUESTS = 8  # a typical answer is decided by a median; give your own window a p95's size
MAX_TOKENS = 192  # room for the shipped schema's longest record (about 150 tokens)


def test_structured_output(llmperf_target: Target, llmperf_load: LoadFunction,
                           llmperf_slo: SLOChecker, llmperf_settings: Settings) -> None:
    # Ollama's and the in-process engine's own clients send no schema: the load says so
    # (Unsupported), and the test skips with why.
    result = llmperf_load(users=1, requests=REQUESTS, max_tokens=MAX_TOKENS,
                          prompts=StructuredPrompts(seed=llmperf_settings.load.seed))
    llmperf_slo.check(result)

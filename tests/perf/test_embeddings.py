"""Embeddings (``POST /v1/embeddings``): two users embedding one input a request, then batches
of 8, as a retrieval service does when it indexes documents and when it embeds queries.  An
embeddings answer streams nothing: the latency is to the whole answer (``e2el_ms``), the
throughput in inputs and input tokens a second (``embedded_inputs_per_s``,
``input_token_throughput``).

The embedded llama.cpp gets a second server for it, launched with ``--embeddings`` (the
session's server is launched as a chat deployment is); ``--llmperf-endpoint embeddings``
drives the session's own server, and an attached server is asked directly.
"""

from __future__ import annotations

import pytest

from pytest_llmperf import EmbeddingsFunction, SLOChecker, Target

REQUESTS = 16  # a median's sample at each batch size


@pytest.mark.parametrize("batch", [1, 8], ids=["batch1", "batch8"])
def test_embeddings(llmperf_target: Target, llmperf_embeddings: EmbeddingsFunction,
                    llmperf_slo: SLOChecker, batch: int) -> None:
    result = llmperf_embeddings(users=2, batch=batch, requests=REQUESTS)
    llmperf_slo.check(result)

"""What the prefix cache saves: four documents of 512 tokens, each asked one question with
nothing cached and then a new question with the document cached (SGLang's shared-prefix
workload); the report gives the TTFT gain and the share of prompt tokens the server says it
served from its cache.  The second pass is held to the SLOs (it is what a user of a cached
document sees); the test fails if the server reports a cache that did not hold the documents.

Skipped, with the reason, where the engine keeps no prefix cache or it was launched with the
cache off (--llmperf-prefix-caching yes); llama.cpp switches it per request."""

from __future__ import annotations

from pytest_llmperf import PrefixCacheFunction, SLOChecker, Target


def test_prefix_cache(llmperf_target: Target, llmperf_prefix_cache: PrefixCacheFunction,
                      llmperf_slo: SLOChecker) -> None:
    cache = llmperf_prefix_cache(documents=4, document_tokens=512)
    llmperf_slo.check(cache.warm)

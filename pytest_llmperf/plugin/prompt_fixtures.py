"""Fixtures about the prompts themselves: what a long prompt costs, what the cache saves.

- ``llmperf_prefill(lengths=(128, 512, 2048), requests=2)``: one user, prompts of exactly each
  length in the model's tokens (lengths the context cannot hold with their answer are left
  out, and the report says so); a sweep over input length, with a table and a chart.
- ``llmperf_prefix_cache(documents=4, document_tokens=1024)``: every document asked once with
  nothing cached, then each asked a new question; the TTFT gain and the cached share.

Both need the model's tokenizer (the test is skipped, with the reason, where the engine has
none) and a source of their own with a fresh salt, so they never share a prompt with another
test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_llmperf.plugin.fixtures import LoadFunction
from pytest_llmperf.plugin.recorder import ResultRecorder

if TYPE_CHECKING:
    from pytest_llmperf.clients.base import Tokenizer
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.results.sweep import SweepResult
    from pytest_llmperf.searches.prefix_cache import PrefixCacheResult
    from pytest_llmperf.settings.resolve import Settings

__all__ = ["llmperf_prefill", "llmperf_prefix_cache"]

# Room left in the context for the chat template around an exact user text.
_TEMPLATE_MARGIN = 64


class PrefillFunction(Protocol):
    def __call__(self, lengths: Sequence[int] = ..., *, requests: int = ..., users: int = ...,
                 max_tokens: int | None = None) -> SweepResult: ...


class PrefixCacheFunction(Protocol):
    def __call__(self, *, documents: int = ..., document_tokens: int = ...,
                 question_tokens: int = ..., max_tokens: int = ...) -> PrefixCacheResult: ...


def _tokenizer(served: ServedModel, test: str) -> Tokenizer:
    if served.tokenizer is None:
        pytest.skip(f"{test} makes prompts of exact lengths with the model's tokenizer, and "
                    f"{served.description} offers none")
    return served.tokenizer


def fitting_lengths(lengths: Sequence[int], context: int | None, max_tokens: int
                    ) -> tuple[list[int], list[int]]:
    """(the lengths a request fits into ``context`` with its answer, the rest)."""
    if context is None:
        return list(lengths), []
    room = context - max_tokens - _TEMPLATE_MARGIN
    return [n for n in lengths if n <= room], [n for n in lengths if n > room]


@pytest.fixture
def llmperf_prefill(llmperf_load: LoadFunction, llmperf_server: ServedModel,
                    llmperf_settings: Settings, llmperf_recorder: ResultRecorder,
                    request: pytest.FixtureRequest) -> PrefillFunction:
    from pytest_llmperf.plugin.search_fixtures import record_sweep
    from pytest_llmperf.prompts.synthetic import Lengths, RandomPrompts
    from pytest_llmperf.results.sweep import SweepResult

    def prefill(lengths: Sequence[int] = (128, 512, 2048), *, requests: int = 2,
                users: int = 1, max_tokens: int | None = None) -> SweepResult:
        tokenizer = _tokenizer(llmperf_server, "the prefill sweep")
        answer = max_tokens or llmperf_settings.max_tokens
        fit, left_out = fitting_lengths(sorted(lengths), llmperf_server.context_tokens, answer)
        if not fit:
            pytest.skip(f"no prompt of {', '.join(map(str, lengths))} tokens fits the "
                        f"{llmperf_server.context_tokens}-token context with its answer")
        first_call = llmperf_recorder.calls + 1
        # One warm-up before the shortest prompts only: it warms the server, and a warm-up
        # of every length would cost as much as the measurement.
        points = tuple(llmperf_load(
            users=users, requests=requests, max_tokens=answer, warmup=None if i == 0 else 0,
            prompts=RandomPrompts(tokenizer, input_lengths=Lengths("fixed", n),
                                  seed=llmperf_settings.seed))
            for i, n in enumerate(fit))
        result = SweepResult("input_tokens", points, values=tuple(float(n) for n in fit))
        extra = {"left_out": f"{', '.join(map(str, left_out))} tokens left out: the "
                             f"{llmperf_server.context_tokens}-token context holds no such "
                             f"prompt with its {answer}-token answer"} if left_out else {}
        record_sweep(result, first_call, request, llmperf_server, llmperf_settings,
                     llmperf_recorder, "prefill", **extra)
        return result

    return prefill


@pytest.fixture
def llmperf_prefix_cache(llmperf_load: LoadFunction, llmperf_server: ServedModel,
                         llmperf_settings: Settings, llmperf_recorder: ResultRecorder
                         ) -> PrefixCacheFunction:
    from pytest_llmperf.prompts.shared_prefix import SharedPrefixPrompts
    from pytest_llmperf.report.entry import prefix_cache_entry
    from pytest_llmperf.searches.prefix_cache import PrefixCacheResult, cache_unavailable

    def prefix_cache(*, documents: int = 4, document_tokens: int = 1024,
                     question_tokens: int = 32, max_tokens: int = 16) -> PrefixCacheResult:
        reason = cache_unavailable(llmperf_server, llmperf_settings)
        if reason:
            pytest.skip(reason)
        tokenizer = _tokenizer(llmperf_server, "the prefix-cache test")
        fit, _ = fitting_lengths([document_tokens + question_tokens],
                                 llmperf_server.context_tokens, max_tokens)
        if not fit:
            pytest.skip(f"a {document_tokens}-token document does not fit the "
                        f"{llmperf_server.context_tokens}-token context")
        source = SharedPrefixPrompts(
            tokenizer, documents=documents, questions=2, document_tokens=document_tokens,
            question_tokens=question_tokens, output_tokens=max_tokens,
            seed=llmperf_settings.seed)
        # One user, no warm-up: a warm-up would ask the documents before the first pass.
        cold, warm = (llmperf_load(users=1, requests=documents, warmup=0, max_tokens=max_tokens,
                                   prompts=source) for _ in range(2))
        result = PrefixCacheResult(cold, warm, document_tokens)
        llmperf_recorder.add_search(result, prefix_cache_entry(result))
        share = result.warm_cached_share
        if share is not None and share < 0.5:
            pytest.fail(f"the prefix cache was asked for, but {llmperf_server.description} "
                        f"served only {share:.0%} of the second asks' prompt tokens from it: "
                        "the cache does not hold these documents", pytrace=False)
        return result

    return prefix_cache

"""Fixtures about the prompts themselves: what a long prompt costs, what the cache saves.

- ``llmperf_prefill(lengths=(128, 512, 2048), requests=2)``: one user, prompts of exactly each
  length in the model's tokens (lengths the context cannot hold with their answer are left
  out, and the report says so); a sweep over input length, with a table and a chart.
- ``llmperf_prefix_cache(documents=4, document_tokens=1024)``: every document asked once with
  nothing cached, then each asked a new question; the TTFT gain and the cached share.
- ``llmperf_replay(trace=None)``: a request trace replayed at its recorded times, with its
  lengths and shared prompt blocks: the file given, else ``--llmperf-dataset trace:FILE``, else
  the trace the project ships (prompts.shipped_trace); ``--llmperf-trace-speed`` and
  ``--llmperf-trace-window`` apply.

Each needs the model's tokenizer (the test is skipped, with the reason, where the engine has
none) and a source of its own with a fresh salt, so it never shares a prompt with another
test.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_llmperf.plugin.fixtures import measuring
from pytest_llmperf.plugin.recorder import ResultRecorder
from pytest_llmperf.plugin.search_fixtures import record_sweep

if TYPE_CHECKING:
    from pytest_llmperf.bench.bench import Bench
    from pytest_llmperf.results.prefix_cache import PrefixCacheResult
    from pytest_llmperf.results.sweep import SweepResult
    from pytest_llmperf.results.window import WindowResult
    from pytest_llmperf.settings.groups import Settings

__all__ = ["PrefillFunction", "PrefixCacheFunction", "ReplayFunction"]


class PrefillFunction(Protocol):
    """``llmperf_prefill``'s type, for annotating tests."""

    def __call__(self, lengths: Sequence[int] = ..., *, requests: int = ..., users: int = ...,
                 max_tokens: int | None = None) -> SweepResult: ...


class PrefixCacheFunction(Protocol):
    """``llmperf_prefix_cache``'s type, for annotating tests."""

    def __call__(self, *, documents: int = ..., document_tokens: int = ...,
                 question_tokens: int = ..., max_tokens: int = ...) -> PrefixCacheResult: ...


class ReplayFunction(Protocol):
    """``llmperf_replay``'s type, for annotating tests."""

    def __call__(self, trace: str | Path | None = None, *, warmup: int | None = None,
                 max_concurrency: int | None = None) -> WindowResult: ...


@pytest.fixture
def llmperf_prefill(llmperf_test_bench: Bench, llmperf_recorder: ResultRecorder,
                    request: pytest.FixtureRequest) -> PrefillFunction:
    def prefill(lengths: Sequence[int] = (128, 512, 2048), *, requests: int = 2,
                users: int = 1, max_tokens: int | None = None) -> SweepResult:
        with measuring(llmperf_recorder):
            result, left_out = llmperf_test_bench.prefill(lengths, requests=requests,
                                                          users=users, max_tokens=max_tokens)
        for point in result.points:
            llmperf_recorder.compare(point.windows)
        record_sweep(result, request, llmperf_recorder, left_out)
        return result

    return prefill


@pytest.fixture
def llmperf_prefix_cache(llmperf_test_bench: Bench, llmperf_recorder: ResultRecorder,
                         llmperf_settings: Settings) -> PrefixCacheFunction:
    from pytest_llmperf.results.recorded import Provenance, RecordedPrefixCache

    def prefix_cache(*, documents: int = 4, document_tokens: int = 1024,
                     question_tokens: int = 32, max_tokens: int = 16) -> PrefixCacheResult:
        with measuring(llmperf_recorder):
            result = llmperf_test_bench.prefix_cache(
                documents=documents, document_tokens=document_tokens,
                question_tokens=question_tokens, max_tokens=max_tokens,
                prefix_caching=llmperf_settings.server.prefix_caching)
        for window in (result.cold, result.warm):
            llmperf_recorder.compare(window.windows)
        llmperf_recorder.record_search(RecordedPrefixCache(
            Provenance(llmperf_recorder.item.nodeid), result.warm.served, result.gain))
        problem = result.cache_problem(llmperf_test_bench.served.description)
        if problem:
            pytest.fail(problem, pytrace=False)
        return result

    return prefix_cache


@pytest.fixture
def llmperf_replay(llmperf_test_bench: Bench, llmperf_recorder: ResultRecorder,
                   llmperf_settings: Settings, request: pytest.FixtureRequest) -> ReplayFunction:
    from pytest_llmperf.plugin.session import active_session
    from pytest_llmperf.plugin.slo_check import sizing_checks
    from pytest_llmperf.prompts.shipped_trace import SHIPPED_TRACE
    from pytest_llmperf.prompts.trace_files import replayed_trace

    def replay(trace: str | Path | None = None, *, warmup: int | None = None,
               max_concurrency: int | None = None) -> WindowResult:
        load = llmperf_settings.load
        dataset = active_session(request.config).dataset
        chosen = dataset.trace if dataset is not None and trace is None else None
        if chosen is None:  # the file given, else the shipped one, shaped as the options say
            chosen = replayed_trace(Path(trace or SHIPPED_TRACE), load.trace_speed,
                                    load.trace_window)
        served = llmperf_test_bench.served
        with measuring(llmperf_recorder):
            window = llmperf_test_bench.replay(
                chosen, warmup=warmup, max_concurrency=max_concurrency,
                label=llmperf_recorder.item.name,
                checks=sizing_checks(request, served.backend, served.model))
        llmperf_recorder.compare(window.windows)
        return window

    return replay

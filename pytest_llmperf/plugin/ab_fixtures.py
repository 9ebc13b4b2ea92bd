"""``llmperf_ab``: two builds held against each other in one session (``--llmperf-ab``).

The test calls ``llmperf_ab(users=2)``: both sides (settings.ab_spec) measure the same load,
their windows alternating (bench.ab: interleaved rounds A B, B A, ..., or bracketed A B ... A
with ``--llmperf-ab-mode bracket``), every window recorded with its side, and the candidate
held against the baseline with the baseline gate's statistics.  A gate of thresholds.toml or
``--llmperf-compare-fail`` that B exceeds with confidence fails the test.  Without
``--llmperf-ab`` the test is skipped with how to give it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

import pytest

from pytest_llmperf.plugin.fixtures import measuring, settings_for_test, terminal_progress
from pytest_llmperf.plugin.recorder import ResultRecorder

if TYPE_CHECKING:
    from pytest_llmperf.bench.ab import ABResult, ABSide, Mode
    from pytest_llmperf.bench.bench import Bench
    from pytest_llmperf.engines.matrix import Target
    from pytest_llmperf.results.window import WindowResult
    from pytest_llmperf.settings.ab_spec import ABSideSpec
    from pytest_llmperf.settings.groups import Settings

__all__ = ["ABFunction", "llmperf_ab"]


class ABFunction(Protocol):
    def __call__(self, *, users: int | None = None, rate: float | None = None,
                 requests: int | None = None, duration_s: float | None = None,
                 warmup: int | None = None, max_tokens: int | None = None) -> ABResult: ...


def side_settings(settings: Settings, spec: ABSideSpec, backend: str) -> Settings:
    """The session's settings with what ``spec`` changes for its side."""
    server = settings.server
    changes: dict[str, Any] = {}
    if spec.url is not None:
        changes["base_url"] = spec.url
    if spec.python is not None:
        changes["engine_python"] = {**server.engine_python, backend: spec.python}
    if spec.gpus is not None:
        changes["gpus"] = (spec.gpus,)
    if spec.args:
        changes["engine_args"] = {**server.engine_args, backend: spec.args}
    return dataclasses.replace(settings, server=dataclasses.replace(server, **changes))


def _side(settings: Settings, spec: ABSideSpec, target: Target,
          config: pytest.Config) -> ABSide:
    from pytest_llmperf.bench.ab import ABSide
    from pytest_llmperf.bench.serve import serve

    backend = spec.backend or target.backend
    chosen = side_settings(settings, spec, backend)

    @contextlib.contextmanager
    def opened() -> Iterator[Bench]:
        with serve(chosen, backend=backend, model=spec.model or target.model,
                   progress=terminal_progress(config)) as bench:
            yield bench

    return ABSide(spec.name, opened)


@pytest.fixture
def llmperf_ab(llmperf_target: Target, llmperf_recorder: ResultRecorder,
               request: pytest.FixtureRequest) -> ABFunction:
    from pytest_llmperf.bench.ab import run_ab

    settings = settings_for_test(llmperf_recorder, request)
    sides = settings.store.ab
    if sides is None:
        pytest.skip("an A/B comparison: give the two builds with --llmperf-ab 'before: "
                    "url=URL; after: url=URL' (keys url, python, gpus, backend, model, args)")
    a, b = (_side(settings, spec, llmperf_target, request.config) for spec in sides)

    def compare(*, users: int | None = None, rate: float | None = None,
                requests: int | None = None, duration_s: float | None = None,
                warmup: int | None = None, max_tokens: int | None = None) -> ABResult:
        names = (a.name, b.name)

        def measure(bench: Bench) -> WindowResult:
            return bench.window(users=users, rate=rate, requests=requests,
                                duration_s=duration_s, warmup=warmup, max_tokens=max_tokens,
                                label=request.node.name)

        with measuring(llmperf_recorder):
            result = run_ab(
                a, b, measure, rounds=settings.store.ab_rounds,
                mode=cast("Mode", settings.store.ab_mode),
                gates=llmperf_recorder.gates(llmperf_target.backend, llmperf_target.model),
                seed=settings.load.seed,
                on_window=lambda side, window: llmperf_recorder.record_window(
                    window, None, side=names[side]),
                progress=terminal_progress(request.config))
        llmperf_recorder.record_ab(result)
        return result

    return compare

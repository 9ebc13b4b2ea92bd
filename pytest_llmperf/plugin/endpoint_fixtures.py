"""Fixtures for endpoints beyond chat: ``llmperf_embeddings``.

``llmperf_embeddings(users=2, batch=8, requests=16)`` measures ``/v1/embeddings`` on a server
that answers it: the session's own where it does (``--llmperf-endpoint embeddings``, or an
attached ``--backend openai`` server), else, for the embedded llama.cpp, a second llama.cpp
launched with ``--embeddings`` for the session, under the same guard and lifecycle as every
engine; other engines skip with why.  Its window is a window like any other: recorded,
reported, held to the test's SLOs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_llmperf.plugin.fixtures import bench_for_test, measuring, terminal_progress
from pytest_llmperf.plugin.recorder import ResultRecorder

if TYPE_CHECKING:
    from pytest_llmperf.bench.bench import Bench
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.engines.matrix import Target
    from pytest_llmperf.observe.telemetry import Telemetry
    from pytest_llmperf.prompts.builtin import PromptSource
    from pytest_llmperf.results.window import WindowResult
    from pytest_llmperf.settings.groups import Settings

__all__ = ["EmbeddingsFunction"]


class EmbeddingsFunction(Protocol):
    """``llmperf_embeddings``' type, for annotating tests."""

    def __call__(self, *, users: int | None = None, rate: float | None = None,
                 requests: int | None = None, duration_s: float | None = None,
                 batch: int | None = None, warmup: int | None = None) -> WindowResult: ...


@pytest.fixture(scope="session")
def llmperf_embeddings_server(llmperf_target: Target, llmperf_server: ServedModel,
                              llmperf_telemetry: Telemetry, llmperf_settings: Settings,
                              pytestconfig: pytest.Config
                              ) -> Iterator[tuple[ServedModel, Telemetry]]:
    """A served model that answers /v1/embeddings, and its telemetry."""
    from pytest_llmperf.engines.base import get_backend
    from pytest_llmperf.engines.lifecycle import ServerStartError
    from pytest_llmperf.observe.telemetry import Telemetry

    endpoint = llmperf_server.endpoint
    serving = endpoint is not None and endpoint.api == "embeddings"
    if serving or llmperf_target.backend == "openai":  # the session's own server
        yield llmperf_server.with_api("embeddings"), llmperf_telemetry
        return
    if llmperf_target.backend != "llamacpp" or llmperf_settings.server.base_url:
        pytest.skip(f"{llmperf_target.id}: embeddings are measured on the embedded llama.cpp, "
                    "on a server the session attaches to, or with --llmperf-endpoint "
                    "embeddings on an engine launched to serve them")
    server = dataclasses.replace(llmperf_settings.server, endpoint="embeddings")
    try:
        with get_backend("llamacpp").serve(server, llmperf_target.entry,
                                           server.output_dir) as served, \
                Telemetry.for_served(
                    served, interval_s=llmperf_settings.load.telemetry_interval) as telemetry:
            telemetry.baseline()
            yield served.with_api("embeddings"), telemetry
    except (ServerStartError, ConnectionError) as exc:
        pytest.fail(f"{llmperf_target.id}: the embeddings server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def llmperf_embeddings_bench(llmperf_embeddings_server: tuple[ServedModel, Telemetry],
                             llmperf_prompts: PromptSource, llmperf_settings: Settings,
                             pytestconfig: pytest.Config) -> Bench:
    from pytest_llmperf.bench.serve import open_bench

    served, telemetry = llmperf_embeddings_server
    return open_bench(served, llmperf_prompts, telemetry, llmperf_settings,
                      terminal_progress(pytestconfig))


@pytest.fixture
def llmperf_embeddings(llmperf_embeddings_bench: Bench, llmperf_recorder: ResultRecorder,
                       request: pytest.FixtureRequest) -> EmbeddingsFunction:
    from pytest_llmperf.plugin.slo_check import sizing_checks
    from pytest_llmperf.prompts.embedding_batches import EmbeddingBatches

    bench = bench_for_test(llmperf_embeddings_bench, llmperf_recorder, request)

    def embeddings(*, users: int | None = None, rate: float | None = None,
                   requests: int | None = None, duration_s: float | None = None,
                   batch: int | None = None, warmup: int | None = None) -> WindowResult:
        """``batch`` inputs a request (default: --llmperf-embedding-batch)."""
        size = batch or bench.load.embedding_batch
        served = bench.served
        with measuring(llmperf_recorder):
            window = bench.window(
                users=users, rate=rate, requests=requests, duration_s=duration_s,
                warmup=warmup, prompts=EmbeddingBatches(bench.prompts, size),
                label=llmperf_recorder.item.name,
                checks=sizing_checks(request, served.backend, served.model))
        llmperf_recorder.compare(window.windows)
        return window

    return embeddings

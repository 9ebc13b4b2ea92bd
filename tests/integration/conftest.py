"""Shared by the integration tests: the embedded llama.cpp engine serving SmolLM2 on CPU."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import builtin_catalog
from pytest_llmperf.engines.llamacpp import LlamaCppBackend
from pytest_llmperf.settings.resolve import resolve_settings


@pytest.fixture(scope="session")
def smollm2_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    """One real embedded engine for the tests that only measure through it."""
    settings = resolve_settings({}, {}, {}, tmp_path_factory.mktemp("smollm2"))
    entry = builtin_catalog().entries["smollm2-135m"]
    with LlamaCppBackend().serve(settings.server, entry, settings.server.output_dir) as served:
        yield served

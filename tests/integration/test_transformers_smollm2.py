"""The in-process transformers engine on a real model: SmolLM2-135M from the embedded GGUF, CPU.

The GGUF is dequantized to float32 on load.  The numbers are printed (``-s`` shows them) so
that they can be quoted; only their presence and sign are asserted, never their size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.clients.inprocess import InProcessClient
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import builtin_catalog
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.records import TokenSource
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.settings.groups import ServerSettings
from pytest_llmperf.settings.resolve import resolve_settings

pytestmark = pytest.mark.integration

MAX_TOKENS = 16


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ServerSettings:
    for module in ("torch", "transformers", "gguf", "accelerate"):
        pytest.importorskip(module)
    root: Path = tmp_path_factory.mktemp("transformers")
    return resolve_settings({"backend": "transformers", "max_tokens": str(MAX_TOKENS)},
                            {}, {}, root).server


@pytest.fixture(scope="module")
def served(settings: ServerSettings) -> Iterator[ServedModel]:
    from pytest_llmperf.engines.transformers import TransformersBackend

    backend = TransformersBackend()
    entry = builtin_catalog().entries["smollm2-135m"]
    backend.check(settings, entry)
    start = time.perf_counter()
    with backend.serve(settings, entry, settings.output_dir) as model:
        print(f"\nloaded {model.description} in {time.perf_counter() - start:.1f} s")
        yield model
    engine = _engine(model)
    assert engine.model is None, "the model outlived its with-block"


def _engine(served: ServedModel) -> Any:
    client = served.client(MAX_TOKENS, 60.0)
    assert isinstance(client, InProcessClient), client
    return client.engine


def _report(result: WindowResult, batch_sizes: list[int], elapsed_s: float) -> None:
    m = result.metrics
    print(f"{result.users} users, {len(result.run.records)} requests in {elapsed_s:.1f} s: "
          f"TTFT p95 {m.value('ttft_ms', 'p95'):.1f} ms, "
          f"TPOT p95 {m.value('tpot_ms', 'p95'):.1f} ms, "
          f"output {m.value('output_token_throughput'):.1f} tok/s, "
          f"batch sizes {batch_sizes}")


@pytest.mark.parametrize(("users", "requests"), [(2, 4), (4, 8)])
def test_smollm2_gguf_on_cpu(served: ServedModel, users: int, requests: int) -> None:
    assert served.endpoint is None and served.server_pid is None
    assert served.engine.startswith("transformers ") and "cpu" in served.engine
    assert served.model_sha256 and served.model_file and served.model_file.endswith(".gguf")
    engine = _engine(served)
    before = len(engine.batch_sizes)
    start = time.perf_counter()
    result = run_load(served, BuiltinPrompts(seed=0), users=users, requests=requests, warmup=1,
                      max_tokens=MAX_TOKENS)
    elapsed = time.perf_counter() - start
    _report(result, engine.batch_sizes[before:], elapsed)
    records = result.run.records
    assert len(records) == requests
    assert all(r.ok for r in records), [r.error for r in records]
    for record in records:
        assert record.output_tokens == len(record.chunk_ns) == MAX_TOKENS
        assert record.output_token_source is TokenSource.ENGINE
        assert record.finish_reason == "length"
        assert record.input_tokens and record.input_tokens > 0
    metrics = result.metrics
    assert metrics.output_token_sources == ("engine",)
    for metric in ("ttft_ms", "tpot_ms"):
        values = metrics.distributions[metric]
        assert len(values) == requests and min(values) > 0
    assert max(engine.batch_sizes[before:]) <= users

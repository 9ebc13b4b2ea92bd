"""llama.cpp through xllamacpp: the embedded default engine, run on CPU in a child process.

The server runs in its own process (see :mod:`pytest_llmperf.backends.xllamacpp_server`), not
inside pytest: it takes the same launch, readiness and teardown path as every other engine, its
CPU and memory are its own, and a native crash cannot take the test session down.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from pytest_llmperf.backends import ServedModel
from pytest_llmperf.client import Endpoint
from pytest_llmperf.config import Settings
from pytest_llmperf.modelfetch import MODEL_SHA256, ensure_smollm2, sha256_of
from pytest_llmperf.server import ManagedServer, free_port

__all__ = ["EMBEDDED_MODELS", "LlamaCppBackend", "LlamaCppTokenizer"]

# Aliases of models the embedded engine can fetch by itself.
EMBEDDED_MODELS = ("smollm2-135m",)
# Slots for parallel requests; the suite's largest concurrency must fit without queueing.
PARALLEL_SLOTS = 8


class LlamaCppTokenizer:
    """Counts tokens with the served model's own tokenizer (llama.cpp ``/tokenize``)."""

    def __init__(self, server_root: str) -> None:
        self.url = server_root.rstrip("/") + "/tokenize"

    async def count(self, session: aiohttp.ClientSession, text: str) -> int:
        payload = {"content": text, "add_special": False}
        async with session.post(self.url, json=payload) as response:
            response.raise_for_status()
            return len((await response.json())["tokens"])


class LlamaCppBackend:
    name = "llamacpp"

    def check(self, settings: Settings, model: str) -> None:
        if settings.base_url or model in EMBEDDED_MODELS:
            return
        path = Path(model).expanduser()
        if path.suffix != ".gguf" or not path.is_file():
            raise ValueError(
                f"{settings.sources['model']}: model {model!r} is neither a model the llamacpp "
                f"backend knows ({', '.join(EMBEDDED_MODELS)}) nor an existing .gguf file"
            )

    @contextlib.contextmanager
    def serve(self, settings: Settings, model: str, workdir: Path) -> Iterator[ServedModel]:
        version = _engine_version()
        if settings.base_url:  # attach to a llama.cpp server someone else runs
            root = settings.base_url.removesuffix("/v1")
            yield ServedModel(self.name, model, self._endpoint(settings, settings.base_url, model),
                              engine=f"llama.cpp server at {root}",
                              token_counter=LlamaCppTokenizer(root))
            return
        if model in EMBEDDED_MODELS:
            path, digest = ensure_smollm2(), MODEL_SHA256
        else:
            path = Path(model).expanduser().resolve()
            digest = sha256_of(path)
        port = free_port()
        root = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable, "-m", "pytest_llmperf.backends.xllamacpp_server",
            "--model", str(path),
            "--port", str(port),
            "--parallel", str(PARALLEL_SLOTS),
            "--ctx-per-slot", str(max(2048, settings.max_tokens + 1024)),
            "--threads", str(len(os.sched_getaffinity(0))),
            "--parent-pid", str(os.getpid()),
        ]
        log_path = workdir / f"llamacpp-{Path(model).stem}-{port}.log"
        with ManagedServer(f"llamacpp ({version})", argv, health_url=f"{root}/health",
                           log_path=log_path) as server:
            yield ServedModel(
                backend=self.name,
                model=model,
                endpoint=self._endpoint(settings, f"{root}/v1", str(path)),
                engine=version,
                model_file=str(path),
                model_sha256=digest,
                token_counter=LlamaCppTokenizer(root),
                server_pid=server.pid,
                log_path=log_path,
            )

    @staticmethod
    def _endpoint(settings: Settings, base_url: str, model: str) -> Endpoint:
        # cache_prompt off: a test about raw prefill must not be served from a slot's cache.
        extra: dict[str, object] = {"cache_prompt": False}
        if settings.ignore_eos:
            extra["ignore_eos"] = True
        return Endpoint(base_url=base_url, model=model, api_key=settings.api_key(),
                        extra_body=extra, reuse_connections=False)


def _engine_version() -> str:
    try:
        return f"xllamacpp {importlib.metadata.version('xllamacpp')}"
    except importlib.metadata.PackageNotFoundError:
        return "xllamacpp (not installed)"

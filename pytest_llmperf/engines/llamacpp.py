"""llama.cpp: the embedded xllamacpp engine (default, CPU) or an external ``llama-server``.

The embedded engine runs in its own process (see :mod:`pytest_llmperf.engines.xllamacpp_server`),
not inside pytest: it takes the same launch, readiness and teardown path as every other engine,
its CPU and memory are its own, and a native crash cannot take the test session down.  With
``--llamacpp-bin PATH`` the same is done for a ``llama-server`` binary (``-ngl``, ``--parallel``,
``-c`` from the options).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from pytest_llmperf.clients.base import Prompt, Turn
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.launched import LaunchedBackend, LaunchSpec, checked_key
from pytest_llmperf.engines.lifecycle import ManagedServer
from pytest_llmperf.engines.modelfetch import MODEL_SHA256, ensure_smollm2, sha256_of
from pytest_llmperf.engines.server_tokenizer import post_json
from pytest_llmperf.observe.server_metrics import ServerMetricNames
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["LlamaCppBackend", "LlamaCppTokenizer", "resolve_gguf"]

# Slots for parallel requests; the suite's largest concurrency must fit without queueing.
PARALLEL_SLOTS = 8
_TOKENIZE_TIMEOUT_S = 30.0


class LlamaCppTokenizer:
    """Counts tokens with the served model's own tokenizer (llama.cpp ``/tokenize``); a prompt
    is first put into the model's chat template (``/apply-template``), as the server does."""

    def __init__(self, server_root: str, api_key: str | None = None) -> None:
        self.root = server_root.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def count_text(self, text: str) -> int:
        return self._tokens(text, add_special=False)

    def count_prompt(self, prompt: str, history: Sequence[Turn] = ()) -> int:
        return self._tokens(self.templated(Prompt(prompt, tuple(history))), add_special=True)

    def templated(self, prompt: Prompt) -> str:
        """The text the server makes of ``prompt``'s messages with the model's chat template."""
        return str(self._post("/apply-template", {"messages": prompt.messages()})["prompt"])

    def encode(self, text: str) -> list[int]:
        answer = self._post("/tokenize", {"content": text, "add_special": False})
        return [int(token) for token in answer["tokens"]]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._post("/detokenize", {"tokens": list(ids)})["content"])

    def slot_context(self) -> int | None:
        """The context of one slot (``/props``): the most tokens one request may take."""
        try:
            response = requests.get(self.root + "/props", headers=self._headers,
                                    timeout=_TOKENIZE_TIMEOUT_S)
            response.raise_for_status()
            n_ctx = response.json()["default_generation_settings"]["n_ctx"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None
        return int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None

    def _tokens(self, text: str, *, add_special: bool) -> int:
        answer = self._post("/tokenize", {"content": text, "add_special": add_special})
        return len(answer["tokens"])

    def _post(self, path: str, payload: dict[str, object]) -> dict[str, Any]:
        return post_json(self.root + path, payload, self._headers)


def resolve_gguf(source: ModelSource) -> tuple[Path, str]:
    """A GGUF source as a local file and its sha256 (the embedded model is fetched first)."""
    if source.embedded == "smollm2-135m":
        return ensure_smollm2(), MODEL_SHA256
    path = Path(source.id).expanduser().resolve()
    return path, sha256_of(path)


class LlamaCppBackend(LaunchedBackend):
    name = "llamacpp"
    source_kinds = ("gguf",)
    install_hint = "pip install xllamacpp"
    oom_patterns = ("cudaMalloc failed: out of memory", "failed to allocate CUDA",
                    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating",
                    "unable to allocate", "out of memory")
    metric_names = ServerMetricNames(
        prompt_tokens=("llamacpp:prompt_tokens_total",),
        generation_tokens=("llamacpp:tokens_predicted_total",),
        prompt_seconds=("llamacpp:prompt_seconds_total",),
        decode_seconds=("llamacpp:tokens_predicted_seconds_total",),
        kv_cache_usage=("llamacpp:kv_cache_usage_ratio",),
        requests_running=("llamacpp:requests_processing",),
        requests_waiting=("llamacpp:requests_deferred",),
        spec_draft_tokens=("llamacpp:spec_decode_num_draft_tokens_total",),
        spec_accepted_tokens=("llamacpp:spec_decode_num_accepted_tokens_total",),
        spec_drafts=("llamacpp:spec_decode_num_drafts_total",),
    )

    def __init__(self) -> None:
        self._digest: str | None = None

    @property
    def uses_gpus(self) -> bool:  # type: ignore[override]
        return False  # CPU unless -ngl offloads; llama.cpp then falls back layer by layer

    def check(self, settings: ServerSettings, model: ModelEntry) -> None:
        super().check(settings, model)
        source = model.source(self.source_kinds)
        if settings.base_url or source is None or source.embedded:
            return
        if source.embedded is None and not Path(source.id).expanduser().is_file():
            raise ValueError(f"{settings.sources.get('model', '--model')}: GGUF file "
                             f"{source.id} of model {model.alias!r} does not exist")

    def missing(self, settings: ServerSettings) -> str | None:
        binary = settings.llamacpp_bin
        if binary is not None:
            if not (binary.is_file() and os.access(binary, os.X_OK)):
                return (f"llama-server binary {binary} (--llamacpp-bin) is not an executable "
                        "file; build llama.cpp or install its release binaries")
            return None
        if importlib.util.find_spec("xllamacpp") is None:
            return f"the embedded engine needs xllamacpp: `{self.install_hint}`"
        return None

    def local_source(self, source: ModelSource) -> ModelSource:
        path, self._digest = resolve_gguf(source)
        return ModelSource("gguf", str(path), source.quantization, source.bits)

    def launch(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, port: int, tp: int
    ) -> LaunchSpec:
        """The same llama-server command line for both engines; only the program differs."""
        if settings.llamacpp_bin is not None:
            program: tuple[str, ...] = (str(settings.llamacpp_bin),)
        else:
            program = (sys.executable, "-m", "pytest_llmperf.engines.xllamacpp_server",
                       "--parent-pid", str(os.getpid()))
        return LaunchSpec((*program, *self.server_args(settings, source, port)))

    def server_args(self, settings: ServerSettings, source: ModelSource,
                    port: int) -> tuple[str, ...]:
        """llama-server's flags: model, address, slots, total context, offload, threads."""
        # 4096 per slot: the prefill test's 2048-token prompts fit with their answers.
        ctx_per_slot = max(4096, settings.max_tokens + 1024)
        ngl = settings.ngl if settings.ngl is not None else (999 if settings.gpus else 0)
        threads = len(os.sched_getaffinity(0))
        return (
            "-m", source.id, "--host", "127.0.0.1", "--port", str(port),
            "--parallel", str(PARALLEL_SLOTS), "-c", str(PARALLEL_SLOTS * ctx_per_slot),
            "-ngl", str(ngl), "--threads", str(threads), "--metrics", "--cont-batching",
            # Embeddings only when asked: a chat server is launched as a chat deployment is.
            *(("--embeddings", "--pooling", "mean") if settings.endpoint == "embeddings"
              else ()),
            *settings.engine_args.get(self.name, ()),
        )

    def served(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, root: str,
        server: ManagedServer | None,
    ) -> ServedModel:
        served = super().served(settings, model, source, root, server)
        engine = self._engine_name(settings) if server else f"llama.cpp server at {root}"
        tokenizer = LlamaCppTokenizer(root, checked_key(settings))
        return ServedModel(
            **{**served.__dict__, "engine": engine, "model_sha256": self._digest if server
               else None, "token_counter": tokenizer, "tokenizer": tokenizer,
               "model_file": source.id if server else None,
               "context_tokens": tokenizer.slot_context() or served.context_tokens},
        )

    def endpoint(self, settings: ServerSettings, base_url: str, model_id: str) -> Endpoint:
        # cache_prompt off: a test about raw prefill must not be served from a slot's cache.
        # llama.cpp's ignore_eos alone gives exactly max_tokens; it has no min_tokens field.
        # It closes the connection after each streamed answer (see Endpoint).
        return Endpoint(base_url=base_url, model=model_id, api_key=settings.api_key(),
                        extra_body={"cache_prompt": settings.prefix_caching},
                        reuse_connections=False, ignore_eos=settings.ignore_eos,
                        cache_field="cache_prompt")

    def _engine_name(self, settings: ServerSettings) -> str:
        if settings.llamacpp_bin is None:
            try:
                return f"xllamacpp {importlib.metadata.version('xllamacpp')}"
            except importlib.metadata.PackageNotFoundError:
                return "xllamacpp (version unknown)"
        try:
            out = subprocess.run([str(settings.llamacpp_bin), "--version"], capture_output=True,
                                 text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return f"llama-server {settings.llamacpp_bin}"
        lines = [line for line in (out.stdout + out.stderr).splitlines() if "version" in line]
        return f"llama-server ({lines[0].strip()})" if lines else "llama-server"

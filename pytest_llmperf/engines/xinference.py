"""Xinference: ``xinference-local`` (its supervisor and worker, and a process per model, as the
engine's process tree), serving the catalogue's GGUF model on its llama.cpp engine.

Launch: ``xinference-local`` next to the engine's interpreter (``--llmperf-engine-python
xinference=...``; CI: ``eval "$(.ci/xinference-env)"``), on a free port, with its worker's
metrics exporter on another, its home under the session's output directory, login off
(``XINFERENCE_AUTH_ADVANCED=0``: Xinference 4 asks for a first-run setup otherwise) and no
model hub probed (the model is a local file).  Ready when ``GET /v1/models`` answers.  Then the
GGUF file is registered as a custom model (``POST /v1/model_registrations/LLM``; its chat
template, context and stop tokens read from the file's own metadata), launched on the
llama.cpp engine with the same slots and context as the llama.cpp backend gives it
(``POST /v1/models``, which returns once the model is loaded), and measured through
Xinference's OpenAI-compatible API under the uid ``llmperf-ALIAS``.

Metrics: the worker's exporter (``xinference:input_tokens_total_counter``,
``output_tokens_total_counter``, ``time_to_first_token_seconds``) and the API's own
``/metrics`` are captured around every window.  Xinference's llama.cpp engine honours
``ignore_eos`` (exact lengths) and ignores ``min_tokens``.  Stopping: the guard's SIGTERM to
the whole tree; Xinference exits in about 5 s, its model process with it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import requests

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.gguf_metadata import read_gguf_metadata
from pytest_llmperf.engines.launched import (
    LaunchedBackend,
    LaunchSpec,
    auth_headers,
    python_module_missing,
)
from pytest_llmperf.engines.lifecycle import ManagedServer, ServerStartError, free_port
from pytest_llmperf.engines.llamacpp import PARALLEL_SLOTS, resolve_gguf
from pytest_llmperf.observe.server_metrics import ServerMetricNames
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["XinferenceBackend", "custom_model_spec"]

INSTALL_HINT = ("pip install xinference xllamacpp in a virtualenv of its own and name its "
                "python with --llmperf-engine-python xinference=PATH (CI: eval \"$("
                ".ci/xinference-env)\")")
_GGUF_KEYS = ("tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.tokens", "general.architecture")


def custom_model_spec(name: str, gguf: Path, quantization: str, context: int) -> dict[str, Any]:
    """Xinference's custom-model registration (spec version 2) of a local GGUF file: the
    directory as its URI, the file name as its template, the chat template and stop tokens
    from the file's metadata (a built-in family would bring its own system prompt)."""
    meta = read_gguf_metadata(gguf, _GGUF_KEYS)
    template = meta.get("tokenizer.chat_template")
    if not isinstance(template, str) or not template:
        raise ServerStartError(f"xinference: {gguf} has no chat template in its metadata; "
                               "Xinference serves chat only with one")
    tokens = meta.get("tokenizer.ggml.tokens") or []
    eos = meta.get("tokenizer.ggml.eos_token_id")
    stop_ids = [i for i in (0, eos) if isinstance(i, int) and i < len(tokens)]
    stops = list(dict.fromkeys(tokens[i] for i in stop_ids))
    return {
        "version": 2,
        "model_name": name,
        "model_description": f"{gguf.name}, registered by pytest-llmperf",
        "context_length": context,
        "model_lang": ["en"],
        "model_ability": ["generate", "chat"],
        "model_family": name,
        "model_specs": [{
            "model_format": "ggufv2",
            "model_size_in_billions": "1",  # a label here: the file decides
            "quantization": quantization,
            "model_id": None,
            "model_hub": "huggingface",
            "model_uri": str(gguf.parent),
            # Braces in a file name would read as template fields.
            "model_file_name_template": gguf.name.replace("{", "{{").replace("}", "}}"),
        }],
        "chat_template": template,
        "stop_token_ids": sorted(set(stop_ids)),
        "stop": stops,
    }


class XinferenceBackend(LaunchedBackend):
    name = "xinference"
    source_kinds = ("gguf",)
    install_hint = INSTALL_HINT
    health_path = "/v1/models"  # 200 once the supervisor and worker are up (/health is the UI)
    api_path = "/v1"
    metrics_path = "/metrics"  # the API's own; the worker's exporter is added in served()
    uses_gpus = False  # its llama.cpp engine on CPU, as the llama.cpp backend runs here
    min_tokens_field = None  # ignored by its llama.cpp engine; ignore_eos alone is exact
    oom_patterns = ("out of memory", "failed to allocate", "unable to allocate")
    metric_names = ServerMetricNames(
        ttft_seconds=("xinference:time_to_first_token_seconds",),
        prompt_tokens=("xinference:input_tokens_total_counter",),
        generation_tokens=("xinference:output_tokens_total_counter",),
    )

    def __init__(self) -> None:
        self._exporter_port: int | None = None
        self._uid = "llmperf-model"  # set per model in served()

    def missing(self, settings: ServerSettings) -> str | None:
        python = settings.python_for(self.name)
        problem = python_module_missing(python, "xinference", INSTALL_HINT)
        if problem is None and not _program(python).is_file():
            return f"{_program(python)} not found beside {python}; {INSTALL_HINT}"
        return problem

    def local_source(self, source: ModelSource) -> ModelSource:
        path, _ = resolve_gguf(source)  # the embedded model is fetched into the cache first
        return ModelSource("gguf", str(path), source.quantization, source.bits)

    def launch(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, port: int, tp: int
    ) -> LaunchSpec:
        self._exporter_port = free_port()
        home = settings.output_dir / f"xinference-{port}"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        argv = (str(_program(settings.python_for(self.name))), "--host", "127.0.0.1",
                "--port", str(port), "--metrics-exporter-host", "127.0.0.1",
                "--metrics-exporter-port", str(self._exporter_port), "--log-level", "INFO",
                *settings.engine_args.get(self.name, ()))
        return LaunchSpec(argv, {
            "XINFERENCE_HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "XINFERENCE_AUTH_ADVANCED": "0",  # no first-run login setup
            "XINFERENCE_MODEL_SRC": "huggingface",  # no 3 s probe of which hub is reachable
            "HF_HUB_OFFLINE": "1",  # the model is a local file
        })

    def version(self, root: str) -> str | None:
        try:
            response = requests.get(f"{root}/v1/cluster/version", timeout=10)
            version = response.json().get("version") if response.status_code == 200 else None
        except (requests.RequestException, ValueError, AttributeError):
            return None
        return str(version) if version else None

    def endpoint(self, settings: ServerSettings, base_url: str, model_id: str) -> Endpoint:
        return Endpoint(base_url=base_url, model=model_id, api_key=settings.api_key(),
                        ignore_eos=settings.ignore_eos)

    def model_id(self, source: ModelSource) -> str:
        return self._uid

    def served(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, root: str,
        server: ManagedServer | None,
    ) -> ServedModel:
        self._uid = f"llmperf-{model.name.replace('/', '-')}"
        loading = time.monotonic()
        if server is not None:
            self._load(settings, model, source, root, self._uid)
        served = super().served(settings, model, source, root, server)
        more = (f"http://127.0.0.1:{self._exporter_port}/metrics",) if (
            server is not None and self._exporter_port) else ()
        # Its startup is until the model answers: Xinference ready, then the model loaded.
        startup = (None if served.startup_s is None
                   else served.startup_s + time.monotonic() - loading)
        return dataclasses.replace(served, more_metrics_urls=more, startup_s=startup,
                                   model_file=source.id if server else None)

    def _load(self, settings: ServerSettings, model: ModelEntry, source: ModelSource,
              root: str, uid: str) -> None:
        """Register the GGUF file as a custom model and launch it on the llama.cpp engine."""
        gguf = Path(source.id)
        ctx_per_slot = max(4096, settings.max_tokens + 1024)  # as the llama.cpp backend
        spec = custom_model_spec(uid, gguf, source.quantization or "none",
                                 model.context or PARALLEL_SLOTS * ctx_per_slot)
        headers = auth_headers(settings)
        _post(f"{root}/v1/model_registrations/LLM",
              {"model": json.dumps(spec), "persist": False}, headers, 60, "register the model")
        _post(f"{root}/v1/models", {
            "model_uid": uid, "model_name": uid, "model_type": "LLM",
            "model_engine": "llama.cpp", "model_format": "ggufv2",
            "model_size_in_billions": "1", "quantization": spec["model_specs"][0]["quantization"],
            "n_gpu": "auto", "replica": 1,
            "enable_virtual_env": False,  # no uv virtualenv built at launch (20 s)
            "n_ctx": PARALLEL_SLOTS * ctx_per_slot, "n_parallel": PARALLEL_SLOTS,
        }, headers, float(settings.ready_timeout), "launch the model")


def _program(python: str) -> Path:
    """``xinference-local`` beside the interpreter (its virtualenv's bin)."""
    return Path(python).parent / "xinference-local"


def _post(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float,
          what: str) -> None:
    try:
        response = requests.post(url, json=body, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise ServerStartError(f"xinference: could not {what}: POST {url} failed: "
                               f"{type(exc).__name__}") from None
    if response.status_code != 200:
        raise ServerStartError(f"xinference: could not {what}: POST {url} answered HTTP "
                               f"{response.status_code}: {response.text[:300]}")

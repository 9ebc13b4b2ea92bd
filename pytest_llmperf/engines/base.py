"""Inference engines behind one protocol: check the request, then serve the model.

``check`` runs while pytest configures, before any server starts, and raises ``ValueError``
for a request that cannot work at all (engine not installed, model file missing): a usage error.
``unsupported`` says why one cell of the backend x model matrix cannot run (no source of a
kind this engine loads): that cell is skipped.  ``serve`` launches (or attaches to) the engine
and yields a :class:`ServedModel` until the ``with`` block ends, when the engine is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_llmperf.clients.base import RequestSender, TokenCounter, Tokenizer
from pytest_llmperf.clients.openai import Api, Endpoint, StreamingClient
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.settings.groups import ServerSettings

if TYPE_CHECKING:
    from pytest_llmperf.engines.catalog import ModelEntry
    from pytest_llmperf.observe.server_metrics import ServerMetricNames

__all__ = ["BACKEND_CLASSES", "Backend", "ClientFactory", "ServedModel",
           "get_backend"]

# Opens a client for one measured run: (max_tokens, timeout_s, first_token_timeout_s or None)
# -> ``async with`` sender.
ClientFactory = Callable[[int, float, float | None],
                         contextlib.AbstractAsyncContextManager[RequestSender]]


@dataclass(frozen=True)
class ServedModel:
    """A model being served, and what the report says about it."""

    backend: str
    model: str  # the alias or name the user gave
    endpoint: Endpoint | None  # None for an in-process engine (see open_client)
    engine: str  # engine and version, e.g. "xllamacpp 2026.10.11549"
    model_file: str | None = None
    model_sha256: str | None = None
    token_counter: TokenCounter | None = field(default=None, repr=False)
    server_pid: int | None = None  # None: in-process or attached (not ours to measure)
    log_path: Path | None = None
    metrics_url: str | None = None  # the engine's Prometheus endpoint
    metric_names: ServerMetricNames | None = None
    # More Prometheus endpoints to capture around each window (--llmperf-metrics-url).
    more_metrics_urls: tuple[str, ...] = ()
    # Engines that do not speak the OpenAI API (Ollama's native API, in-process engines)
    # bring their own client; None means the OpenAI streaming client on ``endpoint``.
    open_client: ClientFactory | None = field(default=None, repr=False)
    # Raises ServerStartError (ServerExited, ServerOutOfMemory) if a launched server has died
    # since it was ready; None when there is no process of ours to ask.
    check_alive: Callable[[], None] | None = field(default=None, repr=False)
    # Starts a launched server that died again, on the same port, and returns its new pid;
    # None when there is no process of ours to start (plugin.fixtures.live_server does it once).
    restart: Callable[[], int | None] | None = field(default=None, repr=False)
    # Whether requests force their answer to exactly max_tokens (ignore_eos honoured): an
    # answer shorter than that is then a failed request, not a short one.
    forces_length: bool = False
    # The model's tokenizer as ids, for prompts of an exact length; None where the engine
    # offers none (those datasets then stop the test with the reason).
    tokenizer: Tokenizer | None = field(default=None, repr=False)
    # The most tokens one request may take, prompt and answer together (a llama.cpp slot's
    # context, vLLM's max_model_len); None when not known.
    context_tokens: int | None = None
    # The catalogue marks the model as one that reasons before it answers.
    reasoning: bool = False
    # How it is served, where known (launched engines): a comparison of configurations
    # tells them apart by these (pytest_llmperf.configs).
    tensor_parallel: int | None = None
    quantization: str | None = None
    engine_args: tuple[str, ...] = ()
    # Launch to ready, seconds (ManagedServer.ready_s; an in-process engine's model load);
    # None for a server the plugin attached to.
    startup_s: float | None = None
    # TTFT of the first request once a launched engine was ready (plugin.fixtures); None:
    # attached, or not measured.
    first_ttft_ms: float | None = None
    # Replicas of one deployment (several --base-url URLs, ``endpoint`` the first): requests
    # are spread over them by ``replica_policy`` (clients.replicas).
    replicas: tuple[Endpoint, ...] = ()
    replica_policy: str = "round-robin"

    @property
    def info(self) -> ServedInfo:
        """What a result records of the served model."""
        return ServedInfo(self.backend, self.model, self.engine, self.model_file,
                          self.model_sha256, self.tensor_parallel, self.quantization,
                          self.engine_args, self.startup_s, self.first_ttft_ms)

    @property
    def description(self) -> str:
        return self.info.description

    def client(
        self, max_tokens: int, timeout_s: float, first_token_timeout_s: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[RequestSender]:
        """A client whose requests fail as timeouts after ``timeout_s`` without a complete
        answer, or ``first_token_timeout_s`` without a first token."""
        if self.open_client is not None:
            return self.open_client(max_tokens, timeout_s, first_token_timeout_s)
        if self.endpoint is None:
            raise RuntimeError(f"{self.description} has neither an endpoint nor a client")
        if self.replicas:
            from pytest_llmperf.clients.replicas import ReplicaClient

            return ReplicaClient([_client_for(endpoint, max_tokens, timeout_s,
                                              first_token_timeout_s)
                                  for endpoint in self.replicas], policy=self.replica_policy)
        return _client_for(self.endpoint, max_tokens, timeout_s, first_token_timeout_s)

    @property
    def metrics_urls(self) -> tuple[str, ...]:
        """Every Prometheus endpoint captured around a window: the engine's, then the user's."""
        own = (self.metrics_url,) if self.metrics_url else ()
        return tuple(dict.fromkeys((*own, *self.more_metrics_urls)))

    def watching(self, urls: Sequence[str]) -> ServedModel:
        """This served model with ``urls`` (--llmperf-metrics-url) captured around windows."""
        if not urls:
            return self
        return dataclasses.replace(self, more_metrics_urls=tuple(dict.fromkeys(
            (*self.more_metrics_urls, *urls))))

    def with_api(self, api: Api) -> ServedModel:
        """This served model driven through ``api`` (--llmperf-endpoint): chat, completions
        or embeddings."""
        if api == "chat" or self.endpoint is None:
            return self
        return dataclasses.replace(
            self, endpoint=dataclasses.replace(self.endpoint, api=api),
            replicas=tuple(dataclasses.replace(e, api=api) for e in self.replicas))


def _client_for(endpoint: Endpoint, max_tokens: int, timeout_s: float,
                first_token_timeout_s: float | None) -> StreamingClient:
    """The streaming client, or for the embeddings and rerank endpoints their own client."""
    if endpoint.api == "embeddings":
        from pytest_llmperf.clients.embeddings import EmbeddingsClient

        return EmbeddingsClient(endpoint, max_tokens=max_tokens, timeout_s=timeout_s,
                                first_token_timeout_s=first_token_timeout_s)
    if endpoint.api == "rerank":
        from pytest_llmperf.clients.rerank import RerankClient

        return RerankClient(endpoint, max_tokens=max_tokens, timeout_s=timeout_s,
                            first_token_timeout_s=first_token_timeout_s)
    return StreamingClient(endpoint, max_tokens=max_tokens, timeout_s=timeout_s,
                           first_token_timeout_s=first_token_timeout_s)


class Backend(Protocol):
    name: str

    def check(self, settings: ServerSettings, model: ModelEntry) -> None: ...

    def unsupported(self, settings: ServerSettings, model: ModelEntry) -> str | None: ...

    def serve(
        self, settings: ServerSettings, model: ModelEntry, workdir: Path
    ) -> contextlib.AbstractContextManager[ServedModel]: ...


# backend name -> (module, class); modules are imported only when their backend is chosen.
BACKEND_CLASSES: dict[str, tuple[str, str]] = {
    "llamacpp": ("pytest_llmperf.engines.llamacpp", "LlamaCppBackend"),
    "transformers": ("pytest_llmperf.engines.transformers", "TransformersBackend"),
    "vllm": ("pytest_llmperf.engines.vllm", "VLLMBackend"),
    "xinference": ("pytest_llmperf.engines.xinference", "XinferenceBackend"),
    "sglang": ("pytest_llmperf.engines.sglang", "SGLangBackend"),
    "lmdeploy": ("pytest_llmperf.engines.lmdeploy", "LMDeployBackend"),
    "tgi": ("pytest_llmperf.engines.tgi", "TGIBackend"),
    "ollama": ("pytest_llmperf.engines.ollama", "OllamaBackend"),
    "openai": ("pytest_llmperf.engines.openai", "OpenAIBackend"),
}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; imports its module only now."""
    if name not in BACKEND_CLASSES:
        raise ValueError(f"unknown backend {name!r}")
    module, cls = BACKEND_CLASSES[name]
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend

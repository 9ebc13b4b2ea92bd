"""Ollama: ``ollama serve`` launched on a free port (or attached with ``--base-url``).

Requests go to Ollama's native ``/api/chat`` (see :mod:`pytest_llmperf.clients.ollama`), whose
final object carries exact token counts.  Ollama is configured by environment variables only
(``envconfig/config.go``): ``--llmperf-max-num-seqs`` becomes ``OLLAMA_NUM_PARALLEL`` and
``--llmperf-max-model-len`` ``OLLAMA_CONTEXT_LENGTH`` (per request: Ollama reserves it once per
parallel slot); ``--llmperf-engine-args 'ollama: OLLAMA_FLASH_ATTENTION=1'`` adds more.

The model must have been pulled: a multi-GB download inside a test would be a surprise, so a
missing tag fails with the ``ollama pull`` line to run.  Ollama loads a model on its first
request (the warm-up requests do that) and keeps it loaded for its keep-alive time, so when the
served model is torn down it is unloaded explicitly (``keep_alive: 0``), and we wait until
``/api/ps`` no longer lists it: the next test gets the GPU memory back even from a server we
attached to and do not stop.

Limits: Ollama has no ``ignore_eos``, so answers may end before ``max_tokens`` (the record's
``finish_reason`` is then ``"stop"``, not ``"length"``); it always reuses cached prompt prefixes
(``cache_prompt`` is fixed on) and has no Prometheus endpoint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from pytest_llmperf.clients.ollama import OllamaClient
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.launched import LaunchedBackend, LaunchSpec
from pytest_llmperf.engines.lifecycle import ManagedServer, ServerStartError
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["OllamaBackend", "is_pulled", "same_model", "unload"]

INSTALL_URL = "https://ollama.com/download"
# Long enough that the model stays loaded between a test's warm-up and its measured window
# and from one test to the next; short enough that a server orphaned by a killed session
# gives the GPU back by itself.
KEEP_ALIVE = "30m"
UNLOAD_TIMEOUT_S = 60.0
_HTTP_TIMEOUT_S = 10.0


class OllamaBackend(LaunchedBackend):
    name = "ollama"
    source_kinds = ("ollama",)
    install_hint = f"install Ollama from {INSTALL_URL}"
    # Ollama's own list (llm/status.go outOfMemorySubstrings) and the scheduler's refusal
    # ("model requires more system memory (X) than is available (Y)").
    oom_patterns = ("requires more system memory", "out of memory", "out of device memory",
                    "cudaMalloc failed", "hipMalloc failed", "failed to allocate",
                    "allocation failed", "not enough memory", "insufficient memory")
    health_path = "/api/version"
    # Ollama's OpenAI-compatible root: --base-url may name it or the server root; requests
    # use the native API at the root all the same.
    api_path = "/v1"
    metrics_path = None

    # -- launch --------------------------------------------------------------------------

    def check(self, settings: ServerSettings, model: ModelEntry) -> None:
        super().check(settings, model)
        _extra_env(settings)  # a malformed --llmperf-engine-args is a usage error, now

    def missing(self, settings: ServerSettings) -> str | None:
        if shutil.which("ollama") is None:
            return f"the `ollama` binary is not on PATH; install Ollama from {INSTALL_URL}"
        return None

    def launch(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, port: int, tp: int
    ) -> LaunchSpec:
        env = {
            "OLLAMA_HOST": f"127.0.0.1:{port}",
            "OLLAMA_NUM_PARALLEL": str(settings.max_num_seqs),
            "OLLAMA_CONTEXT_LENGTH": str(settings.max_model_len),
            "OLLAMA_KEEP_ALIVE": KEEP_ALIVE,
            # The server must not delete anything in the user's model store at start-up.
            "OLLAMA_NOPRUNE": "1",
            **_extra_env(settings),
        }
        return LaunchSpec((shutil.which("ollama") or "ollama", "serve"), env)

    def version(self, root: str) -> str | None:
        try:
            response = requests.get(f"{root}/api/version", timeout=_HTTP_TIMEOUT_S)
            version = response.json().get("version")
        except (requests.RequestException, ValueError, AttributeError):
            return None
        return version if isinstance(version, str) and version else None

    # -- serve ---------------------------------------------------------------------------

    def served(
        self, settings: ServerSettings, model: ModelEntry, source: ModelSource, root: str,
        server: ManagedServer | None,
    ) -> ServedModel:
        tag = self.model_id(source)
        if not is_pulled(root, tag):
            where = f" (models directory {_models_dir(settings)})" if server else ""
            raise ServerStartError(f"Ollama at {root} has no model {tag!r}{where}: "
                                   f"run `ollama pull {tag}` first")
        version = self.version(root)
        engine = f"ollama {version}" if version else "ollama"
        if server is None:
            engine += f" at {root}"

        def open_client(max_tokens: int, timeout_s: float,
                        first_token_timeout_s: float | None) -> OllamaClient:
            return OllamaClient(root, tag, max_tokens=max_tokens, timeout_s=timeout_s,
                                api_key=settings.api_key(),
                                first_token_timeout_s=first_token_timeout_s)

        return ServedModel(
            backend=self.name,
            model=model.alias,
            # For reference only: open_client speaks the native API, with exact counts.
            endpoint=Endpoint(base_url=f"{root}{self.api_path}", model=tag,
                              api_key=settings.api_key()),
            engine=engine,
            model_file=tag,
            server_pid=server.pid if server else None,
            log_path=server.log_path if server else None,
            open_client=open_client,
            check_alive=server.check_running if server else None,
            restart=server.restart if server else None,
            startup_s=server.ready_s if server else None,
            reasoning=model.reasoning,
            context_tokens=model.context,
        )

    @contextlib.contextmanager
    def serve(self, settings: ServerSettings, model: ModelEntry,
              workdir: Path) -> Iterator[ServedModel]:
        with super().serve(settings, model, workdir) as served:
            try:
                yield served
            finally:
                assert served.endpoint is not None
                root = served.endpoint.base_url.removesuffix(self.api_path)
                try:
                    unload(root, served.endpoint.model, timeout_s=UNLOAD_TIMEOUT_S)
                except (ConnectionError, TimeoutError) as exc:
                    # A launched server is stopped next, which frees its memory anyway.
                    if served.server_pid is None:
                        warnings.warn(f"ollama: {exc}", RuntimeWarning, stacklevel=1)


def _extra_env(settings: ServerSettings) -> dict[str, str]:
    """``--llmperf-engine-args 'ollama: KEY=VALUE ...'``: ``ollama serve`` takes no options,
    only environment variables."""
    env: dict[str, str] = {}
    for arg in settings.engine_args.get("ollama", ()):
        key, sep, value = arg.partition("=")
        if not (sep and key.startswith("OLLAMA_")):
            raise ValueError(f"{settings.sources.get('engine_args', '--llmperf-engine-args')}:"
                             f" ollama takes OLLAMA_NAME=VALUE settings, not {arg!r}")
        env[key] = value
    return env


def _models_dir(settings: ServerSettings) -> str:
    """Where the launched server looks for pulled models (Ollama's default otherwise)."""
    return (_extra_env(settings).get("OLLAMA_MODELS") or os.environ.get("OLLAMA_MODELS")
            or str(Path.home() / ".ollama" / "models"))


def _canonical(name: str) -> str:
    """``llama3.2`` and ``registry.ollama.ai/library/llama3.2:latest`` are one model."""
    name = name.strip().lower().removeprefix("registry.ollama.ai/").removeprefix("library/")
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def same_model(a: str, b: str) -> bool:
    return _canonical(a) == _canonical(b)


def _listed(root: str, path: str, tag: str) -> bool:
    """Whether ``GET {root}{path}`` (``/api/tags`` or ``/api/ps``) lists ``tag``."""
    url = f"{root}{path}"
    try:
        response = requests.get(url, timeout=_HTTP_TIMEOUT_S)
        response.raise_for_status()
        models: list[dict[str, Any]] = response.json().get("models") or []
    except (requests.RequestException, ValueError, AttributeError) as exc:
        raise ConnectionError(f"GET {url} failed: {type(exc).__name__}: {exc}") from None
    return any(same_model(str(m.get(key, "")), tag) for m in models for key in ("name", "model"))


def is_pulled(root: str, tag: str) -> bool:
    return _listed(root, "/api/tags", tag)


def unload(root: str, tag: str, timeout_s: float = UNLOAD_TIMEOUT_S,
           poll_s: float = 0.25) -> None:
    """Ask Ollama to unload ``tag`` now and wait until ``/api/ps`` no longer lists it.

    Raises ``ConnectionError`` when the server cannot be asked and ``TimeoutError`` when the
    model is still loaded after ``timeout_s``.
    """
    url = f"{root}/api/generate"
    try:
        # An empty prompt with keep_alive 0 expires the model's runner (docs/api.md).
        response = requests.post(url, json={"model": tag, "keep_alive": 0},
                                 timeout=_HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise ConnectionError(f"POST {url} failed: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise ConnectionError(f"POST {url} to unload {tag!r} answered HTTP "
                              f"{response.status_code}: {response.text[:300]}")
    # The runner stops in the background; only its leaving /api/ps means the memory is free.
    deadline = time.monotonic() + timeout_s
    while _listed(root, "/api/ps", tag):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{tag!r} was still loaded {timeout_s:g} s after the unload "
                               f"request (GET {root}/api/ps); its GPU memory may not be free")
        time.sleep(poll_s)

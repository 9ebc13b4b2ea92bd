"""Attach to any running OpenAI-compatible server (vLLM, SGLang, Xinference, a cloud endpoint).

Nothing is launched.  Readiness is one ``GET {base_url}/models``, of each replica when
``--base-url`` names several (the load is then spread over them: clients.replicas).  The API
key is read from the environment variable named by ``--api-key-env`` and sent only as a
request header (the URL holds no credentials, query or fragment: engines.launched.attach_url).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import requests

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import ModelEntry
from pytest_llmperf.engines.launched import attach_url, auth_headers, checked_key
from pytest_llmperf.engines.server_tokenizer import VLLMTokenizer
from pytest_llmperf.observe.server_metrics import ServerMetricNames
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["OpenAIBackend", "attached_metric_names"]


class OpenAIBackend:
    name = "openai"

    def check(self, settings: ServerSettings, model: ModelEntry) -> None:
        if not settings.base_url:
            raise ValueError(f"{settings.sources['backend']}: backend 'openai' needs --base-url")

    def unsupported(self, settings: ServerSettings, model: ModelEntry) -> str | None:
        return None  # the server decides which names it serves

    @contextlib.contextmanager
    def serve(
        self, settings: ServerSettings, entry: ModelEntry, workdir: Path
    ) -> Iterator[ServedModel]:
        urls = replica_urls(settings)
        source = entry.source(("hf",))
        model = source.id if source else entry.alias
        responses = [_ready(settings, url) for url in urls]
        # vLLM and SGLang honour both fields; a server that rejects them says so in the errors,
        # and one that ignores them silently gives short answers that fail as such.
        key = checked_key(settings)
        endpoints = tuple(Endpoint(base_url=url, model=model, api_key=key,
                                   ignore_eos=settings.ignore_eos, min_tokens_field="min_tokens")
                          for url in urls)
        engine = _server_name(responses[0], urls[0])
        if len(urls) > 1:
            engine += f" and {len(urls) - 1} more replica{'s' if len(urls) > 2 else ''}"
        yield ServedModel(self.name, entry.alias, endpoints[0], engine=engine,
                          forces_length=settings.ignore_eos, reasoning=entry.reasoning,
                          context_tokens=entry.context,
                          tokenizer=_server_tokenizer(urls[0], model, key),
                          replicas=endpoints if len(endpoints) > 1 else (),
                          replica_policy=settings.replica_policy,
                          metric_names=attached_metric_names())


def attached_metric_names() -> ServerMetricNames:
    """An attached server's engine is not known: every engine's metric names are tried, in
    the order below (they are prefixed per engine, so they do not clash)."""
    from pytest_llmperf.engines.llamacpp import LlamaCppBackend
    from pytest_llmperf.engines.lmdeploy import LMDeployBackend
    from pytest_llmperf.engines.sglang import SGLangBackend
    from pytest_llmperf.engines.tgi import TGIBackend
    from pytest_llmperf.engines.vllm import VLLMBackend
    from pytest_llmperf.engines.xinference import XinferenceBackend

    return ServerMetricNames.union([backend.metric_names for backend in (
        VLLMBackend, SGLangBackend, LlamaCppBackend, TGIBackend, LMDeployBackend,
        XinferenceBackend)])


def replica_urls(settings: ServerSettings) -> tuple[str, ...]:
    """Each --base-url URL, checked again (engines.launched.attach_url: no credentials)."""
    return tuple(attach_url(dataclasses.replace(settings, base_url=url))
                 for url in settings.base_urls)


def _ready(settings: ServerSettings, base_url: str) -> requests.Response:
    """``GET {base_url}/models``, which must answer 200."""
    url = f"{base_url}/models"
    try:
        response = requests.get(url, headers=auth_headers(settings), timeout=10)
    except requests.RequestException as exc:
        raise ConnectionError(
            f"cannot reach the server given by {settings.sources['base_url']}: "
            f"GET {url} failed: {type(exc).__name__}"
        ) from None
    if response.status_code != 200:
        raise ConnectionError(
            f"GET {url} answered HTTP {response.status_code}; check --base-url"
            + (" and the API key" if response.status_code in (401, 403) else "")
        )
    return response


def _server_tokenizer(base_url: str, model: str, key: str | None) -> VLLMTokenizer | None:
    """vLLM's (and compatible servers') ``/tokenize`` beside ``/v1``, where it answers."""
    root = base_url.rstrip("/").removesuffix("/v1")
    tokenizer = VLLMTokenizer(root, model, key)
    try:
        if tokenizer.encode("hello"):
            return tokenizer
    except (requests.RequestException, ValueError, KeyError, TypeError):
        pass
    return None


def _server_name(response: requests.Response, base_url: str) -> str:
    owner = ""
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
        owner = response.json()["data"][0].get("owned_by", "")
    return f"OpenAI-compatible server{f' ({owner})' if owner else ''} at {base_url}"

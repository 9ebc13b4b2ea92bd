"""Attach to any running OpenAI-compatible server (vLLM, SGLang, Xinference, a cloud endpoint).

Nothing is launched.  Readiness is one ``GET {base_url}/models``; the API key is read from the
environment variable named by ``--api-key-env`` and sent only as a request header (the URL
holds no credentials, query or fragment: see engines.launched.attach_url).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import requests

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.engines.catalog import ModelEntry
from pytest_llmperf.engines.launched import attach_url, auth_headers, checked_key
from pytest_llmperf.engines.server_tokenizer import VLLMTokenizer
from pytest_llmperf.settings.groups import ServerSettings

__all__ = ["OpenAIBackend"]


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
        base_url = attach_url(settings)
        source = entry.source(("hf",))
        model = source.id if source else entry.alias
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
        # vLLM and SGLang honour both fields; a server that rejects them says so in the errors,
        # and one that ignores them silently gives short answers that fail as such.
        key = checked_key(settings)
        endpoint = Endpoint(base_url=base_url, model=model, api_key=key,
                            ignore_eos=settings.ignore_eos, min_tokens_field="min_tokens")
        yield ServedModel(self.name, entry.alias, endpoint,
                          engine=_server_name(response, base_url),
                          forces_length=settings.ignore_eos, reasoning=entry.reasoning,
                          context_tokens=entry.context,
                          tokenizer=_server_tokenizer(base_url, model, key))


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

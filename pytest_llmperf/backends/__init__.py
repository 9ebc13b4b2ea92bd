"""Inference engines behind one protocol: check the request, then serve the model.

``check`` runs while pytest configures, before any server starts, and raises ``ValueError``
for a model the engine cannot serve.  ``serve`` launches (or attaches to) the engine and yields
a :class:`ServedModel` until the ``with`` block ends, when the engine is gone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pytest_llmperf.client import Endpoint, TokenCounter
from pytest_llmperf.config import Settings

__all__ = ["Backend", "ServedModel", "get_backend"]


@dataclass(frozen=True)
class ServedModel:
    """A model being served, and what the report says about it."""

    backend: str
    model: str  # the alias or name the user gave
    endpoint: Endpoint
    engine: str  # engine and version, e.g. "xllamacpp 2026.10.11549"
    model_file: str | None = None
    model_sha256: str | None = None
    token_counter: TokenCounter | None = field(default=None, repr=False)
    server_pid: int | None = None
    log_path: Path | None = None

    @property
    def description(self) -> str:
        return f"{self.model} on {self.backend} ({self.engine})"


class Backend(Protocol):
    name: str

    def check(self, settings: Settings, model: str) -> None: ...

    def serve(
        self, settings: Settings, model: str, workdir: Path
    ) -> contextlib.AbstractContextManager[ServedModel]: ...


def get_backend(name: str) -> Backend:
    """The backend called ``name``; imports its module only now."""
    if name == "llamacpp":
        from pytest_llmperf.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend()
    if name == "openai":
        from pytest_llmperf.backends.openai import OpenAIBackend

        return OpenAIBackend()
    raise ValueError(f"unknown backend {name!r}")


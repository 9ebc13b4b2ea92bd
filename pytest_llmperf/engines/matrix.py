"""The backend x model matrix: one :class:`Target` per cell, checked before any server starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_llmperf.settings.groups import Settings

if TYPE_CHECKING:
    from pytest_llmperf.engines.catalog import Catalog, ModelEntry

__all__ = ["Target", "targets"]


@dataclass(frozen=True)
class Target:
    """One cell of the backend x model matrix; ``skip`` says why it cannot run, if so."""

    backend: str
    entry: ModelEntry
    skip: str | None = None

    @property
    def model(self) -> str:
        return self.entry.alias

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.entry.name}"


def targets(settings: Settings, catalog: Catalog, *, check: bool = True) -> list[Target]:
    """Every backend x model cell, backend-major; raises ValueError for a usage error.

    With ``check`` each engine is checked (installed? model file there?) before any server
    starts; without it only the cells are named (what pytest-xdist's controller needs).
    """
    from pytest_llmperf.engines.base import get_backend

    cells: list[Target] = []
    for backend_name in settings.backends:
        backend = get_backend(backend_name)
        for model in settings.models:
            entry = catalog.resolve(model, settings.sources.get("model", "--model"),
                                    any_name=backend_name == "openai")
            reason = backend.unsupported(settings.server, entry)
            if reason is None and check:
                backend.check(settings.server, entry)
            cells.append(Target(backend_name, entry, reason))
    return cells

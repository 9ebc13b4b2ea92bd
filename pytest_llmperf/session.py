"""Session state shared by hooks and fixtures: stash keys, the test matrix and the reporter."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmperf.config import Settings

if TYPE_CHECKING:
    from pytest_llmperf.engines.catalog import Catalog, ModelEntry

__all__ = ["RESULTS_KEY", "SETTINGS_KEY", "TARGETS_KEY", "THRESHOLDS_KEY", "LLMPerfReporter",
           "Target", "targets"]

SETTINGS_KEY = pytest.StashKey[Settings]()
THRESHOLDS_KEY = pytest.StashKey[Any]()  # Thresholds | None (imported lazily)
# Per test: one JSON-ready dict per measured window, in the order the test ran them.
RESULTS_KEY = pytest.StashKey[list[dict[str, Any]]]()
TARGETS_KEY = pytest.StashKey["list[Target]"]()


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


def targets(settings: Settings, catalog: Catalog) -> list[Target]:
    """Every backend x model cell, backend-major; raises ValueError for a usage error.

    Each engine is checked (installed? model file there?) before any server starts.
    """
    from pytest_llmperf.engines.base import get_backend

    cells: list[Target] = []
    for backend_name in settings.backends:
        backend = get_backend(backend_name)
        for model in settings.models:
            entry = catalog.resolve(model, settings.sources.get("model", "--model"),
                                    any_name=backend_name == "openai")
            reason = backend.unsupported(settings, entry)
            if reason is None:
                backend.check(settings, entry)
            cells.append(Target(backend_name, entry, reason))
    return cells


class LLMPerfReporter:
    """Collects every test's results (also from xdist workers) and writes the reports."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.entries: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        results = getattr(report, "llmperf", None)
        if report.when == "call" and results:
            for result in results:
                self.entries.append({**result, "nodeid": report.nodeid,
                                     "outcome": report.outcome})

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.entries or _is_xdist_worker(self.config):
            return
        from pytest_llmperf.report.markdown import render_markdown, write_reports

        markdown = render_markdown(self.entries, rootdir=self.config.rootpath)
        write_reports(markdown, self.settings.report, os.environ.get("GITHUB_STEP_SUMMARY"))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.entries:
            return
        from pytest_llmperf.report.markdown import render_terminal_table

        terminalreporter.write_sep("=", "llmperf results")
        terminalreporter.write_line(render_terminal_table(self.entries))
        if self.settings.report:
            terminalreporter.write_line(f"markdown report: {self.settings.report}")


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")

"""The reporter plugin: collects every test's results (also from pytest-xdist workers), writes
the markdown report, the run's result document (and saved copies), and the terminal summary."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.plugin.session import resolve
from pytest_llmperf.settings.resolve import Settings

__all__ = ["LLMPerfReporter"]


class LLMPerfReporter:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.entries: list[dict[str, Any]] = []  # measured windows
        self.searches: list[dict[str, Any]] = []  # sweeps and capacity searches (their kind)
        self.written: list[str] = []  # what the terminal summary names

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        results = getattr(report, "llmperf", None)
        if report.when == "call" and results:
            for result in results:
                entry = {**result, "nodeid": report.nodeid, "outcome": report.outcome}
                (self.searches if "kind" in entry else self.entries).append(entry)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not (self.entries or self.searches) or _is_xdist_worker(self.config):
            return
        from pytest_llmperf.report.files import write_reports
        from pytest_llmperf.report.markdown import render_markdown

        # Results exist, so these settings resolved once already (here or on the workers).
        settings = resolve(self.config)
        markdown = render_markdown(self.entries, rootdir=self.config.rootpath,
                                   searches=self.searches)
        write_reports(markdown, settings.report, os.environ.get("GITHUB_STEP_SUMMARY"))
        if settings.report:
            self.written.append(f"markdown report: {settings.report}")
        self._store(settings)

    def _store(self, settings: Settings) -> None:
        from pytest_llmperf.observe.host import host_fingerprint
        from pytest_llmperf.store.documents import run_document, save_run, write_run

        fingerprint = host_fingerprint(self.config.rootpath)
        fingerprint["thresholds_sha256"] = _sha256(settings.thresholds)
        document = run_document(self.entries, fingerprint, self.searches)
        paths = [write_run(document, settings.output_dir / "results.json")]
        if settings.json:
            paths.append(write_run(document, settings.json))
        self.written.append(f"result document: {', '.join(map(str, paths))}")
        names = [settings.save] if settings.save else []
        if settings.autosave:
            names.append(_autosave_name(fingerprint))
        for name in names:
            self.written.append(f"saved run: {save_run(document, settings.storage, name)}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not (self.entries or self.searches):
            return
        from pytest_llmperf.report.comparison import comparison_terminal
        from pytest_llmperf.report.terminal import (
            cache_warning_lines,
            capacity_lines,
            inconclusive_lines,
            render_terminal_table,
            validity_lines,
        )

        terminalreporter.write_sep("=", "llmperf results")
        if self.entries:
            terminalreporter.write_line(render_terminal_table(self.entries))
        capacity = capacity_lines(self.searches)
        if capacity:
            terminalreporter.write_sep("-", "llmperf capacity and cache")
            for line in capacity:
                terminalreporter.write_line(line)
        comparison = comparison_terminal(self.entries)
        if comparison:
            terminalreporter.write_sep("-", "llmperf comparison with the baseline")
            terminalreporter.write_line(comparison)
        cache_warnings = cache_warning_lines(self.entries)
        if cache_warnings:
            terminalreporter.write_sep("-", "llmperf: answered from the prefix cache")
            for line in cache_warnings:
                terminalreporter.write_line(line)
        validity = validity_lines(self.entries)
        if validity:
            terminalreporter.write_sep("-", "llmperf: numbers that cannot be fully trusted "
                                            "(README, \"Can the numbers be trusted?\")")
            for line in validity:
                terminalreporter.write_line(line)
        inconclusive = inconclusive_lines(self.entries)
        if inconclusive:
            terminalreporter.write_sep("-", "llmperf: SLOs the sample cannot support yet")
            for line in inconclusive:
                terminalreporter.write_line(line)
        for line in self.written:
            terminalreporter.write_line(line)


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _autosave_name(fingerprint: dict[str, Any]) -> str:
    commit = str(fingerprint.get("git_commit", "")).split()[0]
    return commit if commit and commit != "unknown" else "autosave"


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")

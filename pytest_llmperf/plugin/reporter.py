"""The reporter plugin: collects every test's results (also from pytest-xdist workers), writes
the markdown report, the run's result document (and saved copies), and the terminal summary."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmperf.plugin.session import resolve
from pytest_llmperf.settings.groups import Settings

if TYPE_CHECKING:
    from pytest_llmperf.results.recorded import RecordedSearch, RecordedWindow

__all__ = ["LLMPerfReporter"]


class LLMPerfReporter:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.windows: list[RecordedWindow] = []
        self.searches: list[RecordedSearch] = []  # sweeps, capacity searches, prefix caches
        self.written: list[str] = []  # what the terminal summary names

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        carried = getattr(report, "llmperf", None)
        if report.when != "call" or not carried:
            return
        import dataclasses

        from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError
        from pytest_llmperf.results.recorded import RecordedWindow, search_from_json

        try:
            results = Fields(carried, f"results of {report.nodeid}")
            windows = results.each("windows", RecordedWindow.from_json)
            searches = results.each("searches", search_from_json)
        except JSONDecodeError as exc:  # a worker of another release: say so, keep the rest
            self.written.append(f"results not read: {exc}")
            return
        for window in windows:
            self.windows.append(dataclasses.replace(window, provenance=dataclasses.replace(
                window.provenance, outcome=report.outcome)))
        for search in searches:
            self.searches.append(dataclasses.replace(search, provenance=dataclasses.replace(
                search.provenance, outcome=report.outcome)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not (self.windows or self.searches) or _is_xdist_worker(self.config):
            return
        from pytest_llmperf.report.files import write_reports
        from pytest_llmperf.report.markdown import render_markdown

        # Results exist, so these settings resolved once already (here or on the workers).
        settings = resolve(self.config)
        markdown = render_markdown(self.windows, rootdir=self.config.rootpath,
                                   searches=self.searches)
        write_reports(markdown, settings.report.report, os.environ.get("GITHUB_STEP_SUMMARY"))
        if settings.report.report:
            self.written.append(f"markdown report: {settings.report.report}")
        self._store(settings)

    def _store(self, settings: Settings) -> None:
        from pytest_llmperf.observe.host import host_fingerprint
        from pytest_llmperf.store.documents import RunDocument, save_run, write_run

        fingerprint: dict[str, object] = dict(host_fingerprint(self.config.rootpath))
        fingerprint["thresholds_sha256"] = _sha256(settings.checks.thresholds)
        hooks: Any = self.config.hook
        hooks.pytest_llmperf_fingerprint(config=self.config, fingerprint=fingerprint)
        document = RunDocument.new(self.windows, fingerprint, self.searches)
        extra: dict[str, object] = {}
        hooks.pytest_llmperf_result_document(config=self.config, document=document, extra=extra)
        if extra:
            import dataclasses

            document = dataclasses.replace(document, extra=extra)
        paths = [write_run(document, settings.report.output_dir / "results.json")]
        if settings.store.json:
            paths.append(write_run(document, settings.store.json))
        self.written.append(f"result document: {', '.join(map(str, paths))}")
        names = [settings.store.save] if settings.store.save else []
        if settings.store.autosave:
            names.append(_autosave_name(fingerprint))
        for name in names:
            self.written.append(f"saved run: {save_run(document, settings.store.storage, name)}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not (self.windows or self.searches):
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
        if self.windows:
            terminalreporter.write_line(render_terminal_table(self.windows))
        sections = (
            ("llmperf capacity and cache", capacity_lines(self.searches)),
            ("llmperf comparison with the baseline",
             [text] if (text := comparison_terminal(self.windows)) else []),
            ("llmperf: answered from the prefix cache", cache_warning_lines(self.windows)),
            ("llmperf: numbers that cannot be fully trusted (README, \"Can the numbers be "
             "trusted?\")", validity_lines(self.windows)),
            ("llmperf: SLOs the sample cannot support yet", inconclusive_lines(self.windows)),
        )
        for title, lines in sections:
            if lines:
                terminalreporter.write_sep("-", title)
                for line in lines:
                    terminalreporter.write_line(line)
        for line in self.written:
            terminalreporter.write_line(line)


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _autosave_name(fingerprint: dict[str, object]) -> str:
    commit = str(fingerprint.get("git_commit", "")).split()[0] if fingerprint.get(
        "git_commit") else ""
    return commit if commit and commit != "unknown" else "autosave"


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")

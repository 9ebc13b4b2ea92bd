"""The reporter plugin: collects every test's results (also from pytest-xdist workers), writes
the markdown report, the run's result document (and saved copies), and the terminal summary."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmperf.plugin.session import option_source, resolve
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
        self.failed_writes = 0  # outputs that could not be written (the session then fails)

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
        # A worker of another release: say so, keep the rest (a field no reader names can
        # raise more than JSONDecodeError, as in store.documents.load_run).
        except (JSONDecodeError, ArithmeticError, AttributeError, IndexError, KeyError,
                TypeError, ValueError) as exc:
            self.written.append(f"results of {report.nodeid} not read: {exc}")
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
        from pytest_llmperf.report.markdown import render_markdown

        # Results exist, so these settings resolved once already (here or on the workers).
        settings = resolve(self.config)
        # The measurements first: a report that cannot be written must not cost the saved run.
        self._store(settings)
        markdown = render_markdown(self.windows, rootdir=self.config.rootpath,
                                   searches=self.searches)
        report = settings.report.report
        if report is not None:
            written = self._write("markdown report", option_source(settings, "report"),
                                  functools.partial(_write_text, report, markdown))
            if written:
                self.written.append(f"markdown report: {written}")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            self._write("step summary", "$GITHUB_STEP_SUMMARY",
                        functools.partial(_append_text, Path(summary), markdown))
        if self.failed_writes and session.exitstatus in (pytest.ExitCode.OK,
                                                         pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _write(self, what: str, source: str, write: Callable[[], Path]) -> Path | None:
        """The path ``write`` wrote; None when it failed: said, naming where the path was set,
        and the other outputs are still written."""
        try:
            return write()
        except (OSError, ValueError) as exc:  # ValueError: StoreError, a hook's odd value
            self.failed_writes += 1
            strerror = getattr(exc, "strerror", None)
            filename = getattr(exc, "filename", None)
            self.written.append(f"llmperf: could not write the {what} ({source})"
                                f"{f' {filename}' if filename else ''}: {strerror or exc}")
            return None

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
        outputs = [(settings.report.output_dir / "results.json", "output_dir")]
        if settings.store.json:
            outputs.append((settings.store.json, "json"))
        paths = [self._write("result document", option_source(settings, option),
                             functools.partial(write_run, document, path))
                 for path, option in outputs]
        if any(paths):
            self.written.append(f"result document: {', '.join(str(p) for p in paths if p)}")
        names = [settings.store.save] if settings.store.save else []
        if settings.store.autosave:
            names.append(_autosave_name(fingerprint))
        for name in names:
            saved = self._write(f"saved run {name!r}", option_source(settings, "storage"),
                                functools.partial(save_run, document, settings.store.storage,
                                                  name))
            if saved:
                self.written.append(f"saved run: {saved}")

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


def _write_text(path: Path, text: str) -> Path:
    from pytest_llmperf.store.writing import write_atomic

    write_atomic(path, text)
    return path


def _append_text(path: Path, text: str) -> Path:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
    return path


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

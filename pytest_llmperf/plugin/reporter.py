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
    from pytest_llmperf.results.unmeasured import UnmeasuredTest
    from pytest_llmperf.store.run_document import RunDocument

__all__ = ["LLMPerfReporter", "run_fingerprint", "worker_fingerprint"]


class LLMPerfReporter:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.windows: list[RecordedWindow] = []
        self.searches: list[RecordedSearch] = []  # sweeps, capacity searches, prefix caches
        self.hosts: dict[str, dict[str, object]] = {}  # other hosts' fingerprints (plugin.hosts)
        self.unmeasured: dict[tuple[str, str | None], UnmeasuredTest] = {}  # skipped, failed
        self.written: list[str] = []  # what the terminal summary names
        self.failed_writes = 0  # outputs that could not be written (the session then fails)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        carried = getattr(report, "llmperf", None)
        if not carried:
            self._note_unmeasured(report)
        if report.when != "call" or not carried:
            return
        import dataclasses

        from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError
        from pytest_llmperf.results.recorded import RecordedWindow, search_from_json

        try:
            results = Fields(carried, f"results of {report.nodeid}")
            windows = results.each("windows", RecordedWindow.from_json)
            searches = results.each("searches", search_from_json)
            host = results.text_or_none("host")
            fingerprint = results.obj_or_none("fingerprint")
        # A worker of another release: say so, keep the rest (a field no reader names can
        # raise more than JSONDecodeError, as in store.documents.load_run).
        except (JSONDecodeError, ArithmeticError, AttributeError, IndexError, KeyError,
                TypeError, ValueError) as exc:
            self.written.append(f"results of {report.nodeid} not read: {exc}")
            return
        if host is not None and fingerprint is not None:
            self.hosts[host] = fingerprint.as_dict()
        for window in windows:
            self.windows.append(dataclasses.replace(window, provenance=dataclasses.replace(
                window.provenance, outcome=report.outcome, host=host)))
        for search in searches:
            self.searches.append(dataclasses.replace(search, provenance=dataclasses.replace(
                search.provenance, outcome=report.outcome, host=host)))

    def _note_unmeasured(self, report: pytest.TestReport) -> None:
        """A performance test that ended without a result (skipped: would not fit, no
        engine; failed: the server did not start): the document keeps why."""
        if not (report.skipped or report.failed) or "llmperf" not in report.keywords:
            return
        from pytest_llmperf.plugin.hosts import report_host
        from pytest_llmperf.results.host_names import without_host
        from pytest_llmperf.results.unmeasured import UnmeasuredTest

        host = report_host(report)
        nodeid = without_host(report.nodeid, host)
        if (nodeid, host) in self.unmeasured or any(
                w.provenance.nodeid == nodeid and w.provenance.host == host
                for w in self.windows):
            return
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        else:
            reason = (report.longreprtext.strip().splitlines() or [""])[-1]
        self.unmeasured[(nodeid, host)] = UnmeasuredTest(
            nodeid, report.outcome, reason, report.when, host)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # A run whose performance tests were all skipped (none fits this GPU) is kept too:
        # "does not fit" is half of what a comparison of configurations answers.
        if (not (self.windows or self.searches or self.unmeasured)
                or _is_xdist_worker(self.config)):
            return
        from pytest_llmperf.report.markdown import render_markdown

        # Results exist, so these settings resolved once already (here or on the workers).
        settings = resolve(self.config)
        # The measurements first: a report that cannot be written must not cost the saved run.
        document = self._store(settings)
        markdown = render_markdown(self.windows, rootdir=self.config.rootpath,
                                   searches=self.searches, hosts=self.hosts)
        page_markdown, comparison_html = markdown, ""
        if self.hosts:  # several hosts: which of them to deploy (pytest_llmperf.configs)
            from pytest_llmperf.configs import configs_sections

            where = settings.report.report
            comparison, comparison_html = configs_sections(
                [(settings.store.save or "this run", document)], heading="##",
                chart_dir=settings.report.output_dir,
                relative_to=where.parent if where is not None else None)
            markdown += "\n" + comparison
        report = settings.report.report
        if report is not None:
            written = self._write("markdown report", option_source(settings, "report"),
                                  functools.partial(_write_text, report, markdown))
            if written:
                self.written.append(f"markdown report: {written}")
        if settings.report.html is not None:  # the same content, one self-contained file
            from pytest_llmperf.report.html import report_html

            page = report_html(page_markdown, self.config.rootpath, comparison_html)
            written = self._write("HTML report", option_source(settings, "html"),
                                  functools.partial(_write_text, settings.report.html, page))
            if written:
                self.written.append(f"HTML report: {written}")
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

    def _store(self, settings: Settings) -> RunDocument:
        from pytest_llmperf.store.documents import RunDocument, save_run, write_run

        fingerprint = run_fingerprint(self.config, settings)
        hooks: Any = self.config.hook
        document = RunDocument.new(self.windows, fingerprint, self.searches, self.hosts,
                                   tuple(self.unmeasured.values()))
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
        return document

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
            ("llmperf: numbers that cannot be fully trusted (docs/trust.md, \"Can the numbers be "
             "trusted?\")", validity_lines(self.windows)),
            ("llmperf: SLOs the sample cannot support yet (one line a test; all in the report)",
             inconclusive_lines(self.windows)),
        )
        for title, lines in sections:
            if lines:
                terminalreporter.write_sep("-", title)
                for line in lines:
                    terminalreporter.write_line(line)
        for line in self.written:
            terminalreporter.write_line(line)


def run_fingerprint(config: pytest.Config, settings: Settings) -> dict[str, object]:
    """This host's fingerprint as a run document keeps it: the hardware and software
    (observe.host), the thresholds file's hash, and what pytest_llmperf_fingerprint hooks add."""
    from pytest_llmperf.observe.host import host_fingerprint

    fingerprint: dict[str, object] = dict(host_fingerprint(config.rootpath))
    fingerprint["thresholds_sha256"] = _sha256(settings.checks.thresholds)
    hooks: Any = config.hook
    hooks.pytest_llmperf_fingerprint(config=config, fingerprint=fingerprint)
    return fingerprint


_WORKER_FINGERPRINT = pytest.StashKey[dict[str, object]]()


def worker_fingerprint(config: pytest.Config) -> dict[str, object]:
    """A worker's host fingerprint, read once per worker: it goes with each of its results."""
    found = config.stash.get(_WORKER_FINGERPRINT, None)
    if found is None:
        found = config.stash[_WORKER_FINGERPRINT] = run_fingerprint(config, resolve(config))
    return found


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

"""The reporter plugin: collects every test's results (also from pytest-xdist workers) and
writes the markdown report and the terminal summary."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_llmperf.session import resolve

__all__ = ["LLMPerfReporter"]


class LLMPerfReporter:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
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
        from pytest_llmperf.report.files import write_reports
        from pytest_llmperf.report.markdown import render_markdown

        markdown = render_markdown(self.entries, rootdir=self.config.rootpath)
        # Results exist, so these settings resolved once already (here or on the workers).
        report_path = resolve(self.config).report
        write_reports(markdown, report_path, os.environ.get("GITHUB_STEP_SUMMARY"))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.entries:
            return
        from pytest_llmperf.report.terminal import render_terminal_table

        terminalreporter.write_sep("=", "llmperf results")
        terminalreporter.write_line(render_terminal_table(self.entries))
        report_path = resolve(self.config).report
        if report_path:
            terminalreporter.write_line(f"markdown report: {report_path}")


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")

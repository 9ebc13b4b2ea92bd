"""Writing reports: atomically to a path, and appended to ``$GITHUB_STEP_SUMMARY``."""

from __future__ import annotations

from pathlib import Path

from pytest_llmperf.store.documents import write_atomic

__all__ = ["write_atomic", "write_reports"]


def write_reports(markdown: str, path: Path | None, github_summary: str | None) -> None:
    if path is not None:
        write_atomic(path, markdown)
    if github_summary:
        with open(github_summary, "a", encoding="utf-8") as handle:
            handle.write(markdown)


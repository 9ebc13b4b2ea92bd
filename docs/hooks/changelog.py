"""MkDocs hook: the site's changelog page is the repository's CHANGELOG.md, read at build time
(docs/changelog.md holds only the marker), so the file at the root stays the one copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARKER = "<!-- llmperf-changelog -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    changelog = Path(config["config_file_path"]).parent / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8")
    # The file's own title is the page's: drop it, keep the rest under the page heading.
    body = text.split("\n", 1)[1] if text.startswith("# ") else text
    return markdown.replace(MARKER, body)

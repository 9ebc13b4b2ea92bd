"""thresholds.toml and the catalogue file it may name: TOML whose every error names file:line.

tomllib keeps no positions, so :class:`Locator` finds the line a table, key or string came from.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Locator", "ThresholdError", "TomlDocument", "parse_toml"]


class ThresholdError(ValueError):
    """A thresholds (or catalogue) file that cannot be used; the message names file:line."""


@dataclass(frozen=True)
class TomlDocument:
    path: Path
    data: Mapping[str, Any]  # as tomllib parses it; each reader checks types with file:line
    locate: Locator


def parse_toml(text: str, path: Path) -> TomlDocument:
    """``text`` (read from ``path``) parsed; malformed TOML raises with file:line."""
    try:
        data = tomllib.loads(text)
    # TOMLDecodeError is a ValueError; tomllib also raises a bare ValueError for an integer
    # of over 4300 digits, and RecursionError for arrays or tables nested too deep.
    except (ValueError, RecursionError) as exc:
        line = _toml_error_line(exc)
        where = f"{path}:{line}" if line else str(path)
        raise ThresholdError(f"{where}: malformed TOML: {exc}") from None
    return TomlDocument(path, data, Locator(text.splitlines(), path))


def _toml_error_line(exc: Exception) -> int | None:
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    match = re.search(r"line (\d+)", str(exc))
    return int(match.group(1)) if match else None


class Locator:
    """Finds the line a table, key or string came from (tomllib keeps no positions)."""

    def __init__(self, lines: Sequence[str], path: Path) -> None:
        self._lines = lines
        self._path = path

    def _at(self, index: int | None) -> str:
        return f"{self._path}:{index + 1}" if index is not None else str(self._path)

    def _find(self, needle: str, start: int = 0) -> int | None:
        for index in range(start, len(self._lines)):
            if needle in self._lines[index]:
                return index
        return None

    def _table_index(self, dotted: str, *, or_subtable: bool = False) -> int | None:
        for index, line in enumerate(self._lines):
            stripped = line.strip().replace('"', "").replace("'", "").replace(" ", "")
            name = stripped.split("]")[0][1:]
            if stripped.startswith("[") and (
                name == dotted or (or_subtable and name.startswith(dotted + "."))
            ):
                return index
        return None

    def table(self, dotted: str) -> str:
        index = self._table_index(dotted)
        if index is None:  # only made by a [sub.table], or a key (`slo = ...` in [backends])
            index = self._table_index(dotted, or_subtable=True)
            if index is None:
                parent, _, name = dotted.rpartition(".")
                return self.key(name, after=parent or None)
        return self._at(index)

    def key(self, key: str, after: str | None = None) -> str:
        start = (self._table_index(after) or 0) if after else 0
        for index in range(start, len(self._lines)):
            if re.match(rf"\s*{re.escape(key)}\s*[=.]", self._lines[index]):
                return self._at(index)
        return self._at(self._find(key, start))

    def string(self, value: str, after: str) -> str:
        start = self._table_index(after) or 0
        index = self._find(f'"{value}"', start)
        if index is None:
            index = self._find(f"'{value}'", start)
        return self._at(index)

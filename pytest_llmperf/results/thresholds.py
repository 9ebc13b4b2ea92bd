"""thresholds.toml: the SLOs each test is held to, parsed and validated before any server starts.

```toml
[defaults]                      # every test
slo = ["tpot_ms.p95 < 100", "decode_tokens_per_s.mean >= 10", "error_rate <= 0.01"]

[backends.vllm]                 # tests on that backend
[models."qwen72b-gptq"]         # tests of that model
[tests.test_concurrent_users]   # that test function
slo = ["ttft_ms.p95 < 3000"]
```

A more specific table replaces the checks of the same ``metric[.statistic]`` and adds new ones;
the order is defaults < backends < models < tests.  Every error names file:line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf.engines.catalog import ENTRY_KEYS, CatalogError, ModelEntry, parse_entry
from pytest_llmperf.results.metrics import DISTRIBUTIONS, RESOURCES, SCALARS, parse_statistic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["SCOPES", "Check", "ThresholdError", "Thresholds", "load_thresholds", "parse_check"]

SCOPES: tuple[str, ...] = ("backends", "models", "tests")
_OPERATORS = ("<=", ">=", "<", ">")
_CHECK = re.compile(
    r"\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<stat>[A-Za-z0-9_.]+))?"
    r"\s*(?P<op><=|>=|<|>)\s*(?P<limit>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)


class ThresholdError(ValueError):
    """A thresholds file that cannot be used; the message names file:line."""


@dataclass(frozen=True)
class Check:
    """One SLO, e.g. ``tpot_ms.p95 < 100``, with the place it was written."""

    metric: str
    statistic: str | None
    operator: str
    limit: float
    text: str  # as written, for messages
    origin: str  # "thresholds.toml:12"

    @property
    def key(self) -> str:
        return f"{self.metric}.{self.statistic}" if self.statistic else self.metric

    @property
    def limit_text(self) -> str:
        return self.text.split(self.operator, 1)[1].strip()

    def holds(self, measured: float) -> bool:
        if self.operator == "<":
            return measured < self.limit
        if self.operator == "<=":
            return measured <= self.limit
        if self.operator == ">":
            return measured > self.limit
        return measured >= self.limit


def parse_check(text: str, origin: str) -> Check:
    """Parse ``"metric.stat OP number"``; errors list the valid names."""
    match = _CHECK.fullmatch(text)
    if match is None:
        raise ThresholdError(
            f"{origin}: cannot read SLO {text!r}: expected 'metric.statistic OP number' "
            f"such as 'tpot_ms.p95 < 100' or 'error_rate <= 0.01' (OP one of "
            f"{', '.join(_OPERATORS)})"
        )
    metric, stat = match["metric"], match["stat"]
    if metric in DISTRIBUTIONS:
        if stat is None or parse_statistic(stat) is None:
            raise ThresholdError(
                f"{origin}: {text!r}: {metric} needs a statistic: "
                f"{'unknown statistic ' + repr(stat) + '; ' if stat else ''}"
                "valid: mean, median, min, max, stdev, or a percentile p0..p100 such as p95 or "
                "p99.9"
            )
    elif metric in SCALARS or metric in RESOURCES:
        if stat is not None:
            raise ThresholdError(
                f"{origin}: {text!r}: {metric} is a whole-run number and takes no statistic"
            )
    else:
        raise ThresholdError(
            f"{origin}: {text!r}: unknown metric {metric!r}; per-request metrics (use "
            f"metric.statistic): {', '.join(DISTRIBUTIONS)}; whole-run metrics: "
            f"{', '.join(SCALARS)}; resource metrics: {', '.join(RESOURCES)}"
        )
    return Check(metric, stat, match["op"], float(match["limit"]), text.strip(), origin)


@dataclass(frozen=True)
class Thresholds:
    """Parsed thresholds: checks per scope, ready to resolve for one test."""

    path: Path | None
    defaults: tuple[Check, ...]
    scoped: Mapping[str, Mapping[str, tuple[Check, ...]]]  # scope -> name -> checks
    # Model catalogue entries written here ([models.ALIAS] with hf/ollama/gguf keys), and
    # those of the file named by a top-level `catalog = "models.toml"`.
    models: Mapping[str, ModelEntry] = field(default_factory=dict)

    def for_test(self, *, backend: str, model: str, test: str) -> tuple[Check, ...]:
        """The checks that apply to ``test`` of ``model`` on ``backend``, most specific last."""
        chosen: dict[str, Check] = {check.key: check for check in self.defaults}
        for scope, name in (("backends", backend), ("models", model), ("tests", test)):
            for check in self.scoped.get(scope, {}).get(name, ()):
                chosen[check.key] = check
        return tuple(chosen.values())


def load_thresholds(path: Path) -> Thresholds:
    """Read and validate ``path``; every problem raises :class:`ThresholdError` with file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresholdError(f"cannot read thresholds file {path}: {exc.strerror}") from None
    return parse_thresholds(text, path)


def parse_thresholds(text: str, path: Path) -> Thresholds:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(exc)
        where = f"{path}:{line}" if line else str(path)
        raise ThresholdError(f"{where}: malformed TOML: {exc}") from None
    locator = _Locator(text.splitlines(), path)
    unknown = sorted(set(data) - {"defaults", "catalog", *SCOPES})
    if unknown:
        raise ThresholdError(
            f"{locator.table(unknown[0])}: unknown table [{unknown[0]}]; "
            f"valid: [defaults], {', '.join(f'[{s}.NAME]' for s in SCOPES)}, and a top-level "
            "catalog = \"FILE\""
        )
    defaults = _checks(data.get("defaults", {}), "defaults", locator)
    scoped: dict[str, dict[str, tuple[Check, ...]]] = {}
    for scope in SCOPES:
        tables = data.get(scope, {})
        if not isinstance(tables, dict):
            raise ThresholdError(f"{locator.key(scope)}: {scope} must be a table of tables")
        scoped[scope] = {
            name: _checks(table, f"{scope}.{name}", locator) for name, table in tables.items()
        }
    models = _catalog_file(data.get("catalog"), path, locator)
    models.update(_models(data.get("models", {}), locator))
    return Thresholds(path=path, defaults=defaults, scoped=scoped, models=models)


def _catalog_file(value: Any, path: Path, locator: _Locator) -> dict[str, ModelEntry]:
    """Entries of the file named by ``catalog = "models.toml"`` (relative to this file)."""
    if value is None:
        return {}
    if not isinstance(value, str) or not value.strip():
        raise ThresholdError(f"{locator.key('catalog')}: catalog must name a TOML file")
    file = (path.parent / value).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresholdError(
            f"{locator.key('catalog')}: cannot read catalogue file {file}: {exc.strerror}"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(exc)
        raise ThresholdError(f"{file}{f':{line}' if line else ''}: malformed TOML: {exc}") \
            from None
    inner = _Locator(text.splitlines(), file)
    unknown = sorted(set(data) - {"models"})
    if unknown:
        raise ThresholdError(f"{inner.table(unknown[0])}: unknown table [{unknown[0]}] in a "
                             "catalogue file; valid: [models.ALIAS]")
    for alias, table in data.get("models", {}).items():
        if isinstance(table, dict) and "slo" in table:
            raise ThresholdError(f"{inner.key('slo', after=f'models.{alias}')}: SLOs belong in "
                                 "thresholds.toml, not in a catalogue file")
    return _models(data.get("models", {}), inner)


def _models(tables: Any, locator: _Locator) -> dict[str, ModelEntry]:
    """Catalogue entries among the [models.ALIAS] tables (those with more than ``slo``)."""
    entries: dict[str, ModelEntry] = {}
    if not isinstance(tables, dict):
        return entries
    for alias, table in tables.items():
        where = f"models.{alias}"
        if not isinstance(table, dict):
            raise ThresholdError(f"{locator.table(where)}: [{where}] must be a table")
        keys = {key: value for key, value in table.items() if key in ENTRY_KEYS}
        if not keys:
            continue
        try:
            entries[alias] = parse_entry(alias, keys, locator.table(where))
        except CatalogError as exc:
            key = str(exc).split(":", 1)[0]
            place = locator.key(key, after=where) if key in ENTRY_KEYS else locator.table(where)
            raise ThresholdError(f"{place}: [{where}] {exc}") from None
    return entries


def _checks(table: Any, where: str, locator: _Locator) -> tuple[Check, ...]:
    if not isinstance(table, dict):
        raise ThresholdError(f"{locator.table(where)}: [{where}] must be a table")
    allowed = {"slo", *ENTRY_KEYS} if where.startswith("models.") else {"slo"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ThresholdError(
            f"{locator.key(unknown[0], after=where)}: unknown key {unknown[0]!r} in [{where}]; "
            f"valid: {', '.join(sorted(allowed))}"
        )
    entries = table.get("slo", [])
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ThresholdError(
            f"{locator.key('slo', after=where)}: slo in [{where}] must be a list of strings "
            "such as [\"tpot_ms.p95 < 100\"]"
        )
    return tuple(parse_check(entry, locator.string(entry, after=where)) for entry in entries)


def _toml_error_line(exc: Exception) -> int | None:
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    match = re.search(r"line (\d+)", str(exc))
    return int(match.group(1)) if match else None


class _Locator:
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

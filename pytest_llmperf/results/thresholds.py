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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf.results.metrics import DISTRIBUTIONS, RESOURCES, SCALARS, parse_statistic
from pytest_llmperf.results.tomlfile import Locator, ThresholdError, TomlDocument, parse_toml

__all__ = ["SCOPES", "Check", "ThresholdError", "Thresholds", "load_thresholds", "parse_check"]

SCOPES: tuple[str, ...] = ("backends", "models", "tests")
_OPERATORS = ("<=", ">=", "<", ">")
_CHECK = re.compile(
    r"\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<stat>[A-Za-z0-9_.]+))?"
    r"\s*(?P<op><=|>=|<|>)\s*(?P<limit>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)


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
    # The parsed file, for what else it holds: the model catalogue entries of its
    # [models.ALIAS] tables and of a top-level `catalog = "models.toml"` (engines.catalog).
    document: TomlDocument | None = field(default=None, repr=False, compare=False)

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
    document = parse_toml(text, path)
    data, locator = document.data, document.locate
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
    return Thresholds(path=path, defaults=defaults, scoped=scoped, document=document)


def _checks(table: Any, where: str, locator: Locator) -> tuple[Check, ...]:
    if not isinstance(table, dict):
        raise ThresholdError(f"{locator.table(where)}: [{where}] must be a table")
    # A [models.ALIAS] table also holds the model's catalogue entry: engines.catalog reads and
    # checks those keys.
    allowed = {"slo"}
    unknown = [] if where.startswith("models.") else sorted(set(table) - allowed)
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

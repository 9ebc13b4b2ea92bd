"""thresholds.toml: the SLOs each test is held to, parsed and validated before any server starts.

```toml
[defaults]                      # every test
slo = ["tpot_ms.p95 < 100", "decode_tokens_per_s.mean >= 10", "error_rate <= 0.01"]

[backends.vllm]                 # tests on that backend
[models."qwen72b-gptq"]         # tests of that model
[tests.test_concurrent_users]   # that test function
slo = ["ttft_ms.p95 < 3000",
       "tpot_ms.p95 regresses < 10%"]   # a regression gate: held against --llmperf-compare
```

A more specific table replaces the checks of the same ``metric[.statistic]`` bounded on the same
side (``<``/``<=`` from above, ``>``/``>=`` from below, so both sides of a two-sided SLO apply)
and adds new ones; the order is defaults < backends < models < tests.  Its ``unset = ["tpot_ms.
p95"]`` drops the SLOs of those ``metric[.statistic]`` that less specific tables set (a test
whose small sample cannot decide a p95 holds a median instead).  Every error names
file:line; a limit must be a finite number.  That a [backends.NAME] or [tests.NAME] table names
a backend or test that exists is checked by the plugin (:meth:`Thresholds.unknown_name`), which
knows them.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf.results.metrics import (
    CAPACITY,
    DISTRIBUTIONS,
    ENGINE,
    RESOURCES,
    SCALARS,
    metric_info,
    parse_statistic,
)
from pytest_llmperf.results.server_families import family_statistics, is_server_metric
from pytest_llmperf.results.tomlfile import Locator, ThresholdError, TomlDocument, parse_toml

__all__ = ["COMPARABLE", "SCOPES", "Check", "Gate", "ThresholdError", "Thresholds",
           "load_thresholds", "parse_check", "parse_gate", "thresholds_at"]

SCOPES: tuple[str, ...] = ("backends", "models", "tests")
_OPERATORS = ("<=", ">=", "<", ">")
# A metric of ours, or a family of a server's Prometheus metrics: server[vllm:num_preemptions].
_METRIC = (r"(?P<metric>server\[[A-Za-z_:][A-Za-z0-9_:]*\]|[A-Za-z_][A-Za-z0-9_]*)"
           r"(?:\.(?P<stat>[A-Za-z0-9_.]+))?")
_CHECK = re.compile(
    rf"\s*{_METRIC}"
    r"\s*(?P<op><=|>=|<|>)\s*(?P<limit>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)
_TOLERANCE = r"(?P<amount>\d+\.?\d*|\.\d+)\s*(?P<unit>%|[A-Za-z/]+)?"
_GATE_CLI = re.compile(rf"\s*{_METRIC}\s*:\s*{_TOLERANCE}\s*")
_GATE_ENTRY = re.compile(rf"\s*{_METRIC}\s+regresses\s*<\s*{_TOLERANCE}\s*")
# Whole-run numbers a comparison may hold against a baseline (counts and the error rate are
# SLO matters: a ratio of two error rates of 0 means nothing).
COMPARABLE: tuple[str, ...] = ("request_throughput", "output_token_throughput",
                               "total_token_throughput")


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
    def side(self) -> str:
        """``upper`` (< and <=) or ``lower`` (> and >=): a two-sided SLO is two checks."""
        return "upper" if self.operator in ("<", "<=") else "lower"

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
            f"such as 'tpot_ms.p95 < 100', 'error_rate <= 0.01' or "
            f"'server[vllm:num_preemptions_total].delta <= 0' (OP one of "
            f"{', '.join(_OPERATORS)})"
        )
    metric, stat = _dotted(match["metric"], match["stat"])
    _check_metric(metric, stat, text, origin)
    return Check(metric, stat, match["op"], _finite(match["limit"], text, origin), text.strip(),
                 origin)


def _finite(number: str, text: str, origin: str) -> float:
    """``1e999`` reads as infinity: a limit nothing can miss (or meet) is a typo, not an SLO."""
    value = float(number)
    if not math.isfinite(value):
        raise ThresholdError(f"{origin}: {text!r}: the limit is not a finite number ({number} "
                             "reads as infinity)")
    return value


def _dotted(metric: str, stat: str | None) -> tuple[str, str | None]:
    """``errors`` + ``timeout.p95`` -> ``errors.timeout`` + ``p95``: a whole-run name with a
    dot in it (the error kinds) read whole; anything else as it came."""
    if stat is not None:
        dotted, _, rest = stat.partition(".")
        if f"{metric}.{dotted}" in SCALARS or f"{metric}.{dotted}" in ENGINE:
            return f"{metric}.{dotted}", rest or None
    return metric, stat


def _check_metric(metric: str, stat: str | None, text: str, origin: str) -> None:
    """``metric[.stat]`` names a metric and, for a distribution, a statistic."""
    if is_server_metric(metric):
        problem = ("it needs a statistic, e.g. .delta for a counter, .p95 for a histogram, "
                   ".peak for a gauge" if stat is None else family_statistics(stat))
        if problem:
            raise ThresholdError(f"{origin}: {text!r}: {metric}: {problem}")
    elif metric in DISTRIBUTIONS:
        if stat is None or parse_statistic(stat) is None:
            raise ThresholdError(
                f"{origin}: {text!r}: {metric} needs a statistic: "
                f"{'unknown statistic ' + repr(stat) + '; ' if stat else ''}"
                "valid: mean, median, min, max, stdev, or a percentile p0..p100 such as p95 or "
                "p99.9"
            )
    elif metric in SCALARS or metric in RESOURCES or metric in CAPACITY or metric in ENGINE:
        if stat is not None:
            raise ThresholdError(
                f"{origin}: {text!r}: {metric} is a whole-run number and takes no statistic"
            )
    else:
        raise ThresholdError(
            f"{origin}: {text!r}: unknown metric {metric!r}; per-request metrics (use "
            f"metric.statistic): {', '.join(DISTRIBUTIONS)}; whole-run metrics: "
            f"{', '.join(SCALARS)}; resource metrics: {', '.join(RESOURCES)}; capacity "
            f"search results: {', '.join(CAPACITY)}; the engine's own figures: "
            f"{', '.join(ENGINE)}; a server's Prometheus metric: server[NAME].STATISTIC"
        )


@dataclass(frozen=True)
class Gate:
    """A regression gate, e.g. ``tpot_ms.p95:10%``: fail when, against the baseline, the metric
    got worse by more than ``tolerance`` with confidence (the whole interval of the change lies
    beyond it).  ``relative``: tolerance is a fraction (0.10); else in the metric's unit."""

    metric: str
    statistic: str | None
    tolerance: float
    relative: bool
    text: str
    origin: str

    @property
    def key(self) -> str:
        return f"{self.metric}.{self.statistic}" if self.statistic else self.metric

    def relative_tolerance(self, baseline: float) -> float | None:
        """The tolerance as a fraction of the baseline's value (None: baseline is 0)."""
        if self.relative:
            return self.tolerance
        return None if baseline == 0 else self.tolerance / abs(baseline)


def parse_gate(text: str, origin: str) -> Gate:
    """``metric.stat:10%`` or ``metric.stat:50ms`` (the command line), or the thresholds.toml
    entry ``"metric.stat regresses < 10%"``."""
    match = _GATE_CLI.fullmatch(text) or _GATE_ENTRY.fullmatch(text)
    if match is None:
        raise ThresholdError(
            f"{origin}: {text!r}: cannot read this regression gate: expected 'metric.statistic:"
            "TOLERANCE' such as 'tpot_ms.p95:10%' or 'ttft_ms.p95:50ms' (in thresholds.toml: "
            "'tpot_ms.p95 regresses < 10%')"
        )
    metric, stat = _dotted(match["metric"], match["stat"])
    _check_metric(metric, stat, text, origin)
    if is_server_metric(metric) or metric in ENGINE:
        raise ThresholdError(
            f"{origin}: {text!r}: a server's own metric cannot be compared with a baseline; "
            "hold it to an SLO instead (e.g. 'server[NAME].delta <= 0')")
    if (metric in SCALARS and metric not in COMPARABLE) or stat in ("stdev", "min", "max"):
        raise ThresholdError(
            f"{origin}: {text!r}: {metric}{'.' + stat if stat else ''} cannot be compared with "
            "a baseline; comparable: a distribution's mean, median or percentile, "
            f"{', '.join(COMPARABLE)}, a resource metric or a capacity search's result"
        )
    unit = metric_info(metric).unit
    given, amount = match["unit"], _finite(match["amount"], text, origin)
    if given == "%":
        return Gate(metric, stat, amount / 100.0, True, text.strip(), origin)
    if given is None or given != unit:
        raise ThresholdError(
            f"{origin}: {text!r}: give the tolerance in % or in {metric}'s unit "
            f"({unit or 'none'}), e.g. '{metric}{'.' + stat if stat else ''}:10%'"
        )
    return Gate(metric, stat, amount, False, text.strip(), origin)


@dataclass(frozen=True)
class Thresholds:
    """Parsed thresholds: checks per scope, ready to resolve for one test."""

    path: Path | None
    defaults: tuple[Check | Gate, ...]
    scoped: Mapping[str, Mapping[str, tuple[Check | Gate, ...]]]  # scope -> name -> entries
    # The parsed file, for what else it holds: the model catalogue entries of its
    # [models.ALIAS] tables and of a top-level `catalog = "models.toml"` (engines.catalog).
    document: TomlDocument | None = field(default=None, repr=False, compare=False)
    # scope -> name -> the metric[.statistic] keys its ``unset`` drops
    unset: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def for_test(self, *, backend: str, model: str, test: str) -> tuple[Check, ...]:
        """The SLO checks that apply to ``test`` of ``model`` on ``backend``."""
        return tuple(e for e in self._entries(backend, model, test) if isinstance(e, Check))

    def gates_for_test(self, *, backend: str, model: str, test: str) -> tuple[Gate, ...]:
        """The regression gates (``"... regresses < 10%"``) that apply to that test."""
        return tuple(e for e in self._entries(backend, model, test) if isinstance(e, Gate))

    def _entries(self, backend: str, model: str, test: str) -> list[Check | Gate]:
        # A more specific table replaces an entry of the same kind, metric.statistic and (an
        # SLO) side: "tpot_ms.p95 > 10" stays when a test's table sets "tpot_ms.p95 < 50".
        chosen = {_slot(entry): entry for entry in self.defaults}
        for scope, name in (("backends", backend), ("models", model), ("tests", test)):
            dropped = set(self.unset.get(scope, {}).get(name, ()))
            chosen = {slot: e for slot, e in chosen.items()
                      if not (isinstance(e, Check) and e.key in dropped)}
            for entry in self.scoped.get(scope, {}).get(name, ()):
                chosen[_slot(entry)] = entry
        return list(chosen.values())

    def names(self, scope: str) -> tuple[str, ...]:
        """The NAMEs of the [scope.NAME] tables."""
        return tuple(self.scoped.get(scope, {}))

    def unknown_name(self, scope: str, name: str, known: Iterable[str], what: str
                     ) -> ThresholdError:
        """The error for a [scope.NAME] table that names no ``what`` (a backend, a test):
        file:line, the nearest known name, and the known names."""
        where = (self.document.locate.table(f"{scope}.{name}") if self.document is not None
                 else str(self.path))
        names = list(dict.fromkeys(known))  # in the caller's order
        close = difflib.get_close_matches(name, names, n=1)
        shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30
                                         else "")
        return ThresholdError(
            f"{where}: [{scope}.{name}] names no {what}, so its SLOs would never apply"
            f"{f'; did you mean {close[0]}?' if close else ''} ({what}s: {shown or 'none'})")


def _slot(entry: Check | Gate) -> tuple[str, str, str]:
    return (type(entry).__name__, entry.key, entry.side if isinstance(entry, Check) else "")


def thresholds_at(path: Path) -> Thresholds | None:
    """The thresholds file at ``path``; None when there is none (an error only for a test that
    checks SLOs)."""
    return load_thresholds(path) if path.is_file() else None


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
    scoped: dict[str, dict[str, tuple[Check | Gate, ...]]] = {}
    unset: dict[str, dict[str, tuple[str, ...]]] = {}
    for scope in SCOPES:
        tables = data.get(scope, {})
        if not isinstance(tables, dict):
            raise ThresholdError(f"{locator.key(scope)}: {scope} must be a table of tables")
        scoped[scope] = {
            name: _checks(table, f"{scope}.{name}", locator) for name, table in tables.items()
        }
        unset[scope] = {name: _unset(table, f"{scope}.{name}", locator)
                        for name, table in tables.items() if "unset" in table}
    return Thresholds(path=path, defaults=defaults, scoped=scoped, document=document,
                      unset=unset)


def _unset(table: dict[str, Any], where: str, locator: Locator) -> tuple[str, ...]:
    """The ``unset`` list of [where]: metric[.statistic] keys, each naming a metric."""
    keys = table["unset"]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ThresholdError(f"{locator.key('unset', after=where)}: unset in [{where}] must be "
                             "a list of strings such as [\"tpot_ms.p95\"]")
    for key in keys:
        metric, _, stat = key.strip().partition(".")
        dotted = _dotted(metric, stat or None)
        _check_metric(*dotted, key, locator.string(key, after=where))
    return tuple(k.strip() for k in keys)


def _checks(table: Any, where: str, locator: Locator) -> tuple[Check | Gate, ...]:
    if not isinstance(table, dict):
        raise ThresholdError(f"{locator.table(where)}: [{where}] must be a table")
    # A [models.ALIAS] table also holds the model's catalogue entry: engines.catalog reads and
    # checks those keys.
    allowed = {"slo"} if where == "defaults" else {"slo", "unset"}
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
    return tuple(_parse_entry(entry, locator.string(entry, after=where)) for entry in entries)


def _parse_entry(text: str, origin: str) -> Check | Gate:
    return parse_gate(text, origin) if " regresses " in text else parse_check(text, origin)

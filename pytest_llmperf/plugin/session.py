"""The plugin's activation: settings, thresholds, the matrix, the dataset and the baseline,
checked once per session before any server starts; and each test's own settings.

The plugin stays out of the way: in a session without performance tests it adds its options
and nothing else.  :func:`activate` runs when a collected test asks for the llmperf fixtures,
or at once when an llmperf option was given on the command line.  A bad value raises
:class:`ActivationError` naming the value and where it came from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmperf.engines.matrix import Target, targets
from pytest_llmperf.plugin.hosts import host_label
from pytest_llmperf.plugin.shared_flags import owned_aliases, shared_value
from pytest_llmperf.settings.groups import SettingError, Settings
from pytest_llmperf.settings.options import OPTIONS, SHARED
from pytest_llmperf.settings.resolve import option_text, resolve_settings

if TYPE_CHECKING:
    from pytest_llmperf.engines.catalog import Catalog
    from pytest_llmperf.prompts.dataset_spec import DatasetSpec
    from pytest_llmperf.results.thresholds import Thresholds
    from pytest_llmperf.store.baseline import Baseline

__all__ = ["PER_TEST_GROUPS", "ActivationError", "LLMPerfSession", "activate", "active_session",
           "check_test_scopes", "checked_settings", "checked_targets", "cli_options_given",
           "option_source", "raise_activation_error", "resolve", "target_ids", "test_name",
           "test_settings"]


class ActivationError(ValueError):
    """Settings, thresholds or the matrix cannot be used; the message says which and where."""


@dataclass(frozen=True)
class LLMPerfSession:
    settings: Settings
    thresholds: Thresholds | None  # None: no thresholds file (an error only for SLO checks)
    targets: tuple[Target, ...]
    baseline: Baseline | None = None
    dataset: DatasetSpec | None = None  # --llmperf-dataset, its file read and checked


_SESSION_KEY = pytest.StashKey[LLMPerfSession]()
_ERROR_KEY = pytest.StashKey[str]()
# The groups @pytest.mark.llmperf(...) may set per test (the server is the session's).
PER_TEST_GROUPS = ("load", "search", "checks")


def cli_options_given(config: pytest.Config) -> bool:
    """Whether any llmperf option was given on the command line by one of its own spellings
    (an old one included).  ``--base-url`` alone is not: pytest-base-url shares it, and in a
    session of browser tests it names their web app (it is read once a performance test is
    collected)."""
    return any(config.getoption(dest, None) is not None
               for option in OPTIONS
               for dest in (option.dest, *(option.alias_dest(alias) for alias in option.aliases
                                           if alias not in SHARED)))


def resolve(config: pytest.Config) -> Settings:
    """The settings alone (command line > environment > ini > another plugin's spelling of
    the setting > default); cheap.  A message names the spelling that was typed."""
    cli: dict[str, str | None] = {}
    typed: dict[str, str] = {}
    fallback: dict[str, tuple[str, str]] = {}
    owned = owned_aliases(config)
    for option in OPTIONS:
        value, spelling = _given(config.getoption(option.dest)), option.flag
        for alias in option.aliases:
            if value is not None:
                break
            if alias in SHARED:
                value, spelling, other = shared_value(config, alias, alias in owned)
                if other is not None:
                    fallback[option.name] = other
            else:
                value, spelling = _given(config.getoption(option.alias_dest(alias), None)), alias
        cli[option.name] = value
        if value is not None:
            typed[option.name] = spelling
    ini = {option.name: _ini(config, option.ini) for option in OPTIONS}
    try:
        return resolve_settings(cli, os.environ, ini, Path(config.rootpath), typed=typed,
                                fallback=fallback)
    except SettingError as exc:
        raise ActivationError(str(exc)) from None


def option_source(settings: Settings, name: str) -> str:
    """Where option ``name``'s value came from, for messages: ``--llmperf-report (command
    line)``, ``LLMPERF_REPORT (environment)``, ``--llmperf-output-dir (default)``."""
    source = settings.sources.get(name, "default")
    if source != "default":
        return source
    flag = next((option.flag for option in OPTIONS if option.name == name), name)
    return f"{flag} (default)"


def activate(config: pytest.Config) -> LLMPerfSession:
    """Settings, thresholds and the checked matrix, computed once per session."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        settings = resolve(config)
        try:
            settings.server.gpu_ids()  # one GPU set for several xdist workers: refused now
        except SettingError as exc:
            raise ActivationError(str(exc)) from None
        if not config.getoption("collectonly", False):  # --collect-only writes nothing
            _check_outputs(settings)
        thresholds = _load_thresholds(settings)
        session = LLMPerfSession(settings, thresholds,
                                 tuple(_matrix(settings, thresholds, check=True)),
                                 _load_baseline(settings, Path(config.rootpath),
                                                host_label(config)),
                                 _load_dataset(settings))
        config.stash[_SESSION_KEY] = session
    return session


def active_session(config: pytest.Config) -> LLMPerfSession:
    """The activated session, for fixtures; a bad setting fails the test with its message
    (the collection hook has already stopped pytest for it, see :func:`checked_targets`)."""
    try:
        return activate(config)
    except ActivationError as exc:
        pytest.fail(f"pytest-llmperf: {exc}", pytrace=False)


def checked_targets(config: pytest.Config) -> tuple[Target, ...]:
    """The matrix, for parametrizing while pytest collects.  An error there would only be a
    collection error of one module, so it is kept and raised as a usage error once collection
    ends (:func:`raise_activation_error`): pytest stops before any test or server starts."""
    try:
        return activate(config).targets
    except ActivationError as exc:
        config.stash[_ERROR_KEY] = str(exc)
        return ()


def checked_settings(config: pytest.Config) -> Settings | None:
    """The settings, for parametrizing while pytest collects; None when they are unusable
    (the error is kept and raised once collection ends, as for :func:`checked_targets`)."""
    try:
        return activate(config).settings
    except ActivationError as exc:
        config.stash[_ERROR_KEY] = str(exc)
        return None


def raise_activation_error(config: pytest.Config) -> None:
    error = config.stash.get(_ERROR_KEY, None)
    if error is not None:
        raise pytest.UsageError(error)


def target_ids(config: pytest.Config) -> list[str]:
    """The matrix's target ids without checking any engine; [] when the settings are unusable
    (pytest-xdist's controller groups by them; its workers report the error)."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is not None:
        return [t.id for t in session.targets]
    try:
        settings = resolve(config)
        return [t.id for t in _matrix(settings, _load_thresholds(settings), check=False)]
    except ActivationError:
        return []


def test_settings(settings: Settings, item: pytest.Item) -> Settings:
    """``settings`` with what the test's ``@pytest.mark.llmperf(name=value, ...)`` sets (load,
    search and check settings, by option name: ``requests=16``, ``inconclusive="fail"``),
    parsed and checked as the command line's are; ActivationError names the test and value."""
    marker = item.get_closest_marker("llmperf")
    if marker is None or not marker.kwargs:
        return settings
    options = {option.name: option for option in OPTIONS}
    where = f"{item.nodeid}: @pytest.mark.llmperf"
    changed: dict[str, dict[str, Any]] = {}
    for name, value in marker.kwargs.items():
        option = options.get(name)
        group = next((g for g in (option.groups if option else ()) if g in PER_TEST_GROUPS),
                     None)
        if option is None or group is None:
            allowed = sorted(o.name for o in OPTIONS if set(o.groups) & set(PER_TEST_GROUPS))
            raise ActivationError(f"{where}({name}=...): not a setting a test can change; "
                                  f"these can be: {', '.join(allowed)}")
        try:
            parsed = option.parse(option_text(value))
        except ValueError as exc:
            raise ActivationError(f"{where}({name}={value!r}): {exc}") from None
        changed.setdefault(group, {})[name] = parsed
    if {"requests", "duration"} & set(marker.kwargs):  # the test sizes its windows itself
        changed.setdefault("load", {})["sources"] = {
            **settings.load.sources, **{name: where for name in ("requests", "duration")
                                        if name in marker.kwargs}}
    return dataclasses.replace(settings, **{
        group: dataclasses.replace(getattr(settings, group), **fields)
        for group, fields in changed.items()})



def _given(value: Any) -> str | None:
    """A flag's text; a repeated flag's values joined as one comma list."""
    return ",".join(value) if isinstance(value, list) else value


def _ini(config: pytest.Config, name: str) -> str | None:
    value: Any = config.getini(name)
    return str(value) if value else None


def _check_outputs(settings: Settings) -> None:
    """Every path the run will write, checked now: an output that cannot be written found
    after an hour of load would cost the run (docs/store.md)."""
    from pytest_llmperf.store.writing import unwritable

    outputs: list[tuple[str, Path | None, bool]] = [
        ("report", settings.report.report, False), ("html", settings.report.html, False),
        ("json", settings.store.json, False),
        ("output_dir", settings.report.output_dir, True),
        # Read for --llmperf-compare too, but written only when a run is kept.
        ("storage", settings.store.storage
         if settings.store.save or settings.store.autosave else None, True)]
    for name, path, directory in outputs:
        why = None if path is None else unwritable(path, directory=directory)
        if why is not None:
            raise ActivationError(f"{option_source(settings, name)}: cannot write {path}: "
                                  f"{why}")


def _load_dataset(settings: Settings) -> DatasetSpec | None:
    """The dataset the run sends; a malformed one (or its file) is an error now, naming the
    setting's source and, for a file, its line."""
    if settings.load.dataset is None:
        return None
    from pytest_llmperf.prompts.dataset_spec import parse_dataset

    try:
        return parse_dataset(settings.load.dataset, seed=settings.load.seed,
                             trace_speed=settings.load.trace_speed,
                             trace_window=settings.load.trace_window)
    except ValueError as exc:
        raise ActivationError(f"{settings.sources.get('dataset', '--llmperf-dataset')}: "
                              f"invalid value {settings.load.dataset!r}: {exc}") from None


def _load_thresholds(settings: Settings) -> Thresholds | None:
    from pytest_llmperf.results.thresholds import ThresholdError, thresholds_at
    from pytest_llmperf.settings.parsers import BACKENDS

    try:
        thresholds = thresholds_at(settings.checks.thresholds)  # None: an error only for SLOs
    except ThresholdError as exc:
        raise ActivationError(str(exc)) from None
    if thresholds is None:
        return None
    # A misspelled [backends.NAME] table would never apply: its SLOs silently ignored.
    for name in thresholds.names("backends"):
        if name not in BACKENDS:
            raise ActivationError(str(thresholds.unknown_name("backends", name, BACKENDS,
                                                              "backend")))
    _check_server_slos(thresholds, settings)
    return thresholds


# Backends with no Prometheus endpoint of their own: a server[NAME] SLO needs a metrics URL.
_NO_OWN_METRICS = ("openai", "ollama", "transformers")


def _check_server_slos(thresholds: Thresholds, settings: Settings) -> None:
    """A ``server[NAME].STAT`` SLO on a backend that serves no metrics of its own, with no
    --llmperf-metrics-url, could never be measured: say so now, not after the load."""
    if settings.server.metrics_urls:
        return
    blind = [b for b in settings.backends if b in _NO_OWN_METRICS]
    if not blind:
        return
    # The tables that may apply to those backends' tests ([backends.vllm] does not).
    tables = [table for scope, named in thresholds.scoped.items() for name, table in named.items()
              if scope != "backends" or name in blind]
    entries = [*thresholds.defaults, *(entry for table in tables for entry in table)]
    check = next((e for e in entries if e.metric.startswith("server[")), None)
    if check is not None:
        raise ActivationError(
            f"{check.origin}: {check.text!r} holds a server's own metric, but backend "
            f"{blind[0]!r} serves none that this session can read: give the server's "
            "Prometheus endpoint with --llmperf-metrics-url (e.g. http://HOST:PORT/metrics)")


def check_test_scopes(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Every [tests.NAME] table names a collected test or a test function in a test file of
    the rootdir (``pytest test_a.py`` collects only some); else UsageError naming file:line,
    before any server starts."""
    session = config.stash.get(_SESSION_KEY, None)
    thresholds = session.thresholds if session is not None else None
    if thresholds is None or not thresholds.names("tests"):
        return

    collected = {test_name(item) for item in items}
    unknown = [name for name in thresholds.names("tests") if name not in collected]
    if not unknown:
        return
    defined = _test_functions(config)
    for name in unknown:
        if name not in defined:
            tests = collected | {fn for fn in defined if fn.startswith("test")}
            raise pytest.UsageError(str(thresholds.unknown_name("tests", name, sorted(tests),
                                                                "test")))


# Any function: a project's python_functions may collect more than test_*.
_TEST_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)[ \t]*\(", re.MULTILINE)


def _test_functions(config: pytest.Config) -> set[str]:
    """The names of the functions defined in the rootdir's test files (pytest's
    ``python_files`` patterns, skipping its ``norecursedirs`` and virtualenvs)."""
    patterns = [str(p) for p in config.getini("python_files")]
    skip = [str(p) for p in config.getini("norecursedirs")]
    found: set[str] = set()
    for directory, subdirs, files in os.walk(config.rootpath):
        subdirs[:] = [d for d in subdirs if not any(fnmatch.fnmatch(d, p) for p in skip)
                      and not (Path(directory) / d / "pyvenv.cfg").exists()]
        for file in files:
            if any(fnmatch.fnmatch(file, pattern) for pattern in patterns):
                with contextlib.suppress(OSError):
                    text = (Path(directory) / file).read_text(encoding="utf-8",
                                                              errors="replace")
                    found.update(_TEST_DEF.findall(text))
    return found


def _load_baseline(settings: Settings, rootdir: Path, host: str | None) -> Baseline | None:
    """The baseline to compare with (its windows of this host), checked now rather than
    after an hour of load."""
    if settings.store.compare is None:
        return None
    from pytest_llmperf.observe.host import host_fingerprint
    from pytest_llmperf.store.baseline import BaselineError, load_baseline

    try:
        return load_baseline(settings.store, rootdir, host_fingerprint(rootdir),
                             settings.sources.get("compare", "--llmperf-compare"), host)
    except BaselineError as exc:
        raise ActivationError(str(exc)) from None


def _catalog(thresholds: Thresholds | None) -> Catalog:
    from pytest_llmperf.engines.catalog import catalog_for

    return catalog_for(thresholds)  # a ThresholdError is a ValueError: see _matrix


def _matrix(settings: Settings, thresholds: Thresholds | None, *, check: bool) -> list[Target]:
    try:
        return targets(settings, _catalog(thresholds), check=check)
    except ValueError as exc:  # CatalogError, a missing engine, a bad engine argument
        raise ActivationError(str(exc)) from None


def test_name(item: pytest.Item) -> str:
    """The test function's name, as thresholds.toml's [tests.NAME] names it."""
    return str(getattr(item, "originalname", item.name))

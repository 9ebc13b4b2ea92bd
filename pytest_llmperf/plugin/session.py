"""Session state: stash keys, and the plugin's activation.

The plugin stays out of the way: in a session without performance tests it adds its options
and nothing else.  :func:`activate` resolves the settings, parses ``thresholds.toml`` and
checks every engine of the matrix; it runs when a collected test asks for the llmperf fixtures,
or at once when an llmperf option was given on the command line, and always before any server
starts.  A bad value raises :class:`ActivationError` naming the value and where it came from.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmperf.engines.matrix import Target, targets
from pytest_llmperf.settings.resolve import OPTIONS, SettingError, Settings, resolve_settings

if TYPE_CHECKING:
    from pytest_llmperf.engines.catalog import Catalog
    from pytest_llmperf.prompts.dataset_spec import DatasetSpec
    from pytest_llmperf.results.thresholds import Thresholds

__all__ = ["GATE_FAILURES_KEY", "RESULTS_KEY", "ActivationError", "Baseline", "LLMPerfSession",
           "activate", "active_session", "checked_targets", "cli_options_given",
           "raise_activation_error", "resolve", "target_ids"]

# Per test: one JSON-ready dict per measured window, in the order the test ran them.
RESULTS_KEY = pytest.StashKey[list[dict[str, Any]]]()
# Per test: regression gates exceeded with confidence and not yet reported by llmperf_slo.check
# (the plugin fails the test with them when its body returns).
GATE_FAILURES_KEY = pytest.StashKey[dict[int, list[str]]]()


class ActivationError(ValueError):
    """Settings, thresholds or the matrix cannot be used; the message says which and where."""


@dataclass(frozen=True)
class Baseline:
    """The saved run(s) ``--llmperf-compare`` names, read and checked before any server starts.
    Several (``--llmperf-compare-runs``) are pooled: their spread is the run-to-run variation."""

    paths: tuple[Path, ...]
    documents: tuple[dict[str, Any], ...]
    hardware_note: str | None  # set when its hardware differs (--llmperf-compare-any-hardware)

    @property
    def label(self) -> str:
        """``0003_before.json`` or ``0001_before.json .. 0003_before.json (3 runs)``."""
        if len(self.paths) == 1:
            return self.paths[0].name
        return f"{self.paths[0].name} .. {self.paths[-1].name} ({len(self.paths)} runs)"

    @functools.cached_property
    def windows(self) -> dict[tuple[str, int], list[Mapping[str, Any]]]:
        """Their windows by (node id, call), the runs' windows one after another (see
        store.compare.group_windows)."""
        from pytest_llmperf.store.compare import group_windows

        pooled: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
        for document in self.documents:
            for key, windows in group_windows(document["windows"]).items():
                pooled.setdefault(key, []).extend(windows)
        return pooled

    @functools.cached_property
    def capacities(self) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
        """Their capacity searches by (node id, dimension), one per run that has it."""
        found: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for document in self.documents:
            for search in document.get("searches", []):
                if search.get("kind") == "capacity":
                    key = (str(search.get("nodeid")), str(search.get("dimension")))
                    found.setdefault(key, []).append(search)
        return found


@dataclass(frozen=True)
class LLMPerfSession:
    settings: Settings
    thresholds: Thresholds | None  # None: no thresholds file (an error only for SLO checks)
    targets: tuple[Target, ...]
    baseline: Baseline | None = None
    dataset: DatasetSpec | None = None  # --llmperf-dataset, its file read and checked


_SESSION_KEY = pytest.StashKey[LLMPerfSession]()
_ERROR_KEY = pytest.StashKey[str]()


def cli_options_given(config: pytest.Config) -> bool:
    """Whether any llmperf option was given on the command line."""
    return any(config.getoption(option.dest) is not None for option in OPTIONS)


def resolve(config: pytest.Config) -> Settings:
    """The settings alone (command line > environment > ini > default); cheap."""
    cli = {option.name: _given(config.getoption(option.dest)) for option in OPTIONS}
    ini = {option.name: _ini(config, option.ini) for option in OPTIONS}
    try:
        return resolve_settings(cli, os.environ, ini, Path(config.rootpath))
    except SettingError as exc:
        raise ActivationError(str(exc)) from None


def activate(config: pytest.Config) -> LLMPerfSession:
    """Settings, thresholds and the checked matrix, computed once per session."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        settings = resolve(config)
        thresholds = _load_thresholds(settings)
        session = LLMPerfSession(settings, thresholds,
                                 tuple(_matrix(settings, thresholds, check=True)),
                                 _load_baseline(settings, Path(config.rootpath)),
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


def _given(value: Any) -> str | None:
    """A flag's text; a repeated flag's values joined as one comma list."""
    return ",".join(value) if isinstance(value, list) else value


def _ini(config: pytest.Config, name: str) -> str | None:
    value: Any = config.getini(name)
    return str(value) if value else None


def _load_dataset(settings: Settings) -> DatasetSpec | None:
    """The dataset the run sends; a malformed one (or its file) is an error now, naming the
    setting's source and, for a file, its line."""
    if settings.dataset is None:
        return None
    from pytest_llmperf.prompts.dataset_spec import parse_dataset

    try:
        return parse_dataset(settings.dataset)
    except ValueError as exc:
        raise ActivationError(f"{settings.sources.get('dataset', '--llmperf-dataset')}: "
                              f"invalid value {settings.dataset!r}: {exc}") from None


def _load_thresholds(settings: Settings) -> Thresholds | None:
    from pytest_llmperf.results.thresholds import ThresholdError, load_thresholds

    if not settings.thresholds.is_file():
        return None  # only an error for tests that check SLOs; see fixtures.llmperf_slo
    try:
        return load_thresholds(settings.thresholds)
    except ThresholdError as exc:
        raise ActivationError(str(exc)) from None


def _load_baseline(settings: Settings, rootdir: Path) -> Baseline | None:
    """The baseline to compare with; a missing or unreadable one, or one from other hardware
    (unless allowed), is an error now rather than after an hour of load."""
    if settings.compare is None:
        return None
    from pytest_llmperf.observe.host import host_fingerprint
    from pytest_llmperf.store.compare import hardware_differences
    from pytest_llmperf.store.documents import StoreError, find_saved, load_run

    source = settings.sources.get("compare", "--llmperf-compare")
    try:
        if settings.compare.endswith(".json"):
            path = Path(settings.compare)
            paths = [path if path.is_absolute() else rootdir / path]
        else:
            paths = [run.path for run in find_saved(settings.storage, settings.compare,
                                                     settings.compare_runs)]
        documents = [load_run(path) for path in paths]
    except StoreError as exc:
        raise ActivationError(f"{source}: {exc}") from None
    here = host_fingerprint(rootdir)
    notes = []
    for path, document in zip(paths, documents, strict=True):
        differences = hardware_differences(document["fingerprint"], here)
        if not differences:
            continue
        shown = "; ".join(f"{key}: baseline {before!r}, this machine {now!r}"
                          for key, before, now in differences)
        if not settings.compare_any_hardware:
            raise ActivationError(
                f"{source}: baseline {path} was measured on other hardware ({shown}); its "
                "numbers say nothing about this machine. Compare on the same hardware, or pass "
                "--llmperf-compare-any-hardware to compare anyway (every row is then labelled)"
            )
        notes.append(f"other hardware ({shown})")
    return Baseline(tuple(paths), tuple(documents), "; ".join(dict.fromkeys(notes)) or None)


def _catalog(thresholds: Thresholds | None) -> Catalog:
    from pytest_llmperf.engines.catalog import builtin_catalog, entries_from_thresholds

    catalog = builtin_catalog()  # a ThresholdError below is a ValueError: see _matrix
    return catalog if thresholds is None else catalog.merged(entries_from_thresholds(thresholds))


def _matrix(settings: Settings, thresholds: Thresholds | None, *, check: bool) -> list[Target]:
    try:
        return targets(settings, _catalog(thresholds), check=check)
    except ValueError as exc:  # CatalogError, a missing engine, a bad engine argument
        raise ActivationError(str(exc)) from None

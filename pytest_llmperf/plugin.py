"""pytest entry point (``pytest11``): options, settings, matrix parametrization, reporting hooks.

Hooks only.  Fixtures live in :mod:`pytest_llmperf.fixtures`; nothing heavy (aiohttp, NVML,
xllamacpp) is imported while pytest loads this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.config import OPTIONS, SettingError, Settings, resolve_settings
from pytest_llmperf.session import (
    RESULTS_KEY,
    SETTINGS_KEY,
    TARGETS_KEY,
    THRESHOLDS_KEY,
    LLMPerfReporter,
    targets,
)

_GROUP = "llmperf"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(_GROUP, "LLM serving performance (pytest-llmperf)")
    for option in OPTIONS:
        help_text = f"{option.help} [env {option.env}, ini {option.ini}]"
        group.addoption(option.flag, dest=option.dest, default=None, metavar=option.name.upper(),
                        help=help_text)
        parser.addini(option.ini, help=option.help, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "llmperf: a performance test that drives an inference server"
    )
    cli = {option.name: config.getoption(option.dest) for option in OPTIONS}
    ini = {option.name: _ini(config, option.ini) for option in OPTIONS}
    try:
        settings = resolve_settings(cli, os.environ, ini, Path(config.rootpath))
    except SettingError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not _is_registered(config, "xdist_group"):
        # What pytest-xdist's --dist loadgroup reads; declared so that it is known without xdist.
        config.addinivalue_line("markers", "xdist_group(name): run on one pytest-xdist worker")
    config.stash[SETTINGS_KEY] = settings
    thresholds = _load_thresholds(settings)
    config.stash[THRESHOLDS_KEY] = thresholds
    config.stash[TARGETS_KEY] = _matrix(settings, thresholds)
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_llmperf.xdist_support import TargetGroupPlugin

        config.pluginmanager.register(
            TargetGroupPlugin([t.id for t in config.stash[TARGETS_KEY]]), "llmperf-xdist")
    config.pluginmanager.register(LLMPerfReporter(config, settings), "llmperf-reporter")
    config.pluginmanager.import_plugin("pytest_llmperf.fixtures")


def _ini(config: pytest.Config, name: str) -> str | None:
    value: Any = config.getini(name)
    return str(value) if value else None


def _load_thresholds(settings: Settings) -> Any:
    from pytest_llmperf.results.thresholds import ThresholdError, load_thresholds

    if not settings.thresholds.is_file():
        return None  # only an error for tests that check SLOs; see fixtures.llmperf_slo
    try:
        return load_thresholds(settings.thresholds)
    except ThresholdError as exc:
        raise pytest.UsageError(str(exc)) from None


def _is_registered(config: pytest.Config, marker: str) -> bool:
    return any(line.split("(")[0].split(":")[0].strip() == marker
               for line in config.getini("markers"))


def _matrix(settings: Settings, thresholds: Any) -> list[Any]:
    """The backend x model cells, checked before any server starts."""
    from pytest_llmperf.engines.catalog import builtin_catalog

    catalog = builtin_catalog()
    if thresholds is not None:
        catalog = catalog.merged(thresholds.models)
    try:
        return targets(settings, catalog)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "llmperf_target" in metafunc.fixturenames:
        params = []
        for target in metafunc.config.stash[TARGETS_KEY]:
            # One xdist group per target: under --dist loadgroup its tests share one worker,
            # so each server starts once, on that worker's GPUs.
            marks = [pytest.mark.xdist_group(target.id)]
            if target.skip:
                marks.append(pytest.mark.skip(reason=target.skip))
            params.append(pytest.param(target, id=target.id, marks=marks))
        # Session scope: pytest orders the tests by target, so each server starts once and
        # is stopped before the next one starts.
        metafunc.parametrize("llmperf_target", params, scope="session", indirect=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call":
        results = item.stash.get(RESULTS_KEY, None)
        if results:
            # Plain JSON on the report object survives pytest-xdist's serialisation.
            report.llmperf = results
    return report


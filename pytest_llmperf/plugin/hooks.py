"""pytest entry point (``pytest11``): options, activation, matrix parametrization, reporting.

Hooks only.  Fixtures live in :mod:`pytest_llmperf.plugin.fixtures`; nothing heavy (aiohttp, NVML,
xllamacpp) is imported while pytest loads this module, and a session without performance tests
gets nothing from the plugin but its options (see :mod:`pytest_llmperf.plugin.session`).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmperf.plugin.hosts import host_label
from pytest_llmperf.plugin.recorder import RECORDER_KEY
from pytest_llmperf.plugin.reporter import LLMPerfReporter, worker_fingerprint
from pytest_llmperf.plugin.session import (
    ActivationError,
    activate,
    check_test_scopes,
    checked_settings,
    checked_targets,
    cli_options_given,
    raise_activation_error,
    test_settings,
)
from pytest_llmperf.plugin.shared_flags import install_aliases, option_shape
from pytest_llmperf.settings.options import OPTIONS

_GROUP = "llmperf"


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Every option's flag, and its ini value; the aliases (old spellings, and --base-url,
    which pytest-base-url may register instead) later, once it is known that no other plugin
    has them (plugin.shared_flags)."""
    group = parser.getgroup(_GROUP, "LLM serving performance (pytest-llmperf)")
    for option in OPTIONS:
        also = f"; also {', '.join(option.aliases)}" if option.aliases else ""
        help_text = f"{option.help} [env {option.env}, ini {option.ini}{also}]"
        group.addoption(option.flag, dest=option.dest, default=None, help=help_text,
                        **option_shape(option))
        parser.addini(option.ini, help=option.help.replace("%%", "%"), default=None)
    install_aliases(parser, group, pluginmanager)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """On a remote pytest-xdist worker: the path arguments the controller sent relative to the
    suite's rootdir (plugin.hosts), before pytest reads them."""
    from pytest_llmperf.plugin.hosts import take_remote_args

    take_remote_args(args)
    given = getattr(early_config.known_args_namespace, "file_or_dir", None)
    if isinstance(given, list):
        take_remote_args(given)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_llmperf.plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "llmperf(**settings): a performance test that drives an inference server; "
        "given on a test, its keyword arguments change that test's load, search and check "
        "settings (by option name: requests=16, warmup=0, inconclusive='fail')"
    )
    if not _is_registered(config, "xdist_group"):
        # What pytest-xdist's --dist loadgroup reads; declared so that it is known without xdist.
        config.addinivalue_line("markers", "xdist_group(name): run on one pytest-xdist worker")
    config.pluginmanager.register(LLMPerfReporter(config), "llmperf-reporter")
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_llmperf.plugin.hosts import HostsPlugin, enter_worker
        from pytest_llmperf.plugin.xdist_groups import TargetGroupPlugin

        config.pluginmanager.register(TargetGroupPlugin(config), "llmperf-xdist")
        if hasattr(config, "workerinput"):
            enter_worker(config)
        else:
            config.pluginmanager.register(HostsPlugin(config), "llmperf-hosts")
    config.pluginmanager.import_plugin("pytest_llmperf.plugin.fixtures")
    config.pluginmanager.import_plugin("pytest_llmperf.plugin.search_fixtures")
    config.pluginmanager.import_plugin("pytest_llmperf.plugin.prompt_fixtures")
    config.pluginmanager.import_plugin("pytest_llmperf.plugin.ab_fixtures")
    config.pluginmanager.import_plugin("pytest_llmperf.plugin.endpoint_fixtures")
    if cli_options_given(config):
        # Asked for by name: a bad value is an error now, even with no perf test collected.
        try:
            activate(config)
        except ActivationError as exc:
            raise pytest.UsageError(str(exc)) from None


def _is_registered(config: pytest.Config, marker: str) -> bool:
    return any(line.split("(")[0].split(":")[0].strip() == marker
               for line in config.getini("markers"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "llmperf_target" in metafunc.fixturenames:
        params = []
        for target in checked_targets(metafunc.config):
            # One xdist group per target: under --dist loadgroup its tests share one worker,
            # so each server starts once, on that worker's GPUs.
            marks = [pytest.mark.xdist_group(target.id)]
            if target.skip:
                marks.append(pytest.mark.skip(reason=target.skip))
            params.append(pytest.param(target, id=target.id, marks=marks))
        # Session scope: pytest orders the tests by target, so each server starts once and
        # is stopped before the next one starts.
        metafunc.parametrize("llmperf_target", params, scope="session", indirect=True)
    _parametrize_loads(metafunc)


def _parametrize_loads(metafunc: pytest.Metafunc) -> None:
    """``llmperf_users`` over --llmperf-users and ``llmperf_rate`` over --llmperf-rate: one
    test per load, its id naming it (``users4``, ``rate2``), so a baseline only ever holds a
    test against the same load."""
    wanted = {"llmperf_users", "llmperf_rate"} & set(metafunc.fixturenames)
    if not wanted:
        return
    settings = checked_settings(metafunc.config)
    if settings is None:
        return  # the error stops pytest once collection ends
    load = settings.load
    if "llmperf_users" in wanted:
        metafunc.parametrize("llmperf_users", [
            pytest.param(n, id=load.closed_shape(n).id) for n in load.users])
    if "llmperf_rate" in wanted:
        metafunc.parametrize("llmperf_rate", [
            pytest.param(r, id=load.open_shape(r).id) for r in load.rate])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every performance test carries the ``llmperf`` marker (``-m llmperf`` selects them);
    bad settings, also a test's own @pytest.mark.llmperf(...) or a [tests.NAME] table that
    names no test, stop pytest before any server starts."""
    try:
        _check_collected(config, items)
    except pytest.UsageError as exc:
        if not hasattr(config, "workerinput"):
            raise
        # A pytest-xdist worker's UsageError is lost in an INTERNALERROR of the controller:
        # there, each performance test fails at setup with the message instead.
        config.stash[_WORKER_ERROR] = str(exc)


_WORKER_ERROR = pytest.StashKey[str]()


def _check_collected(config: pytest.Config, items: list[pytest.Item]) -> None:
    raise_activation_error(config)
    perf = [item for item in items if _is_perf(item)]
    if not perf:
        return
    settings = checked_settings(config)
    check_test_scopes(config, items)
    for item in perf:
        if item.get_closest_marker("llmperf") is None:
            item.add_marker(pytest.mark.llmperf)
        elif settings is not None:
            try:
                test_settings(settings, item)
            except ActivationError as exc:
                raise pytest.UsageError(str(exc)) from None


def _is_perf(item: pytest.Item) -> bool:
    return "llmperf_target" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """On a pytest-xdist worker whose collection found a bad setting: fail, before any
    fixture (or server) is set up, with what a session without xdist stops on."""
    error = item.config.stash.get(_WORKER_ERROR, None)
    if error is not None and _is_perf(item):
        pytest.fail(f"pytest-llmperf: {error}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    recorder = item.stash.get(RECORDER_KEY, None)
    host = host_label(item.config)
    if call.when == "call" and recorder is not None and (recorder.windows or recorder.searches):
        # Plain JSON on the report object survives pytest-xdist's serialisation.
        report.llmperf = recorder.to_json()
        if host is not None:  # another host: its label and fingerprint go with its results
            report.llmperf.update(host=host, fingerprint=worker_fingerprint(item.config))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A regression gate the test's own llmperf_slo.check did not report fails the test here,
    once its body has returned (a test that failed already keeps its own failure)."""
    outcome = yield
    recorder = item.stash.get(RECORDER_KEY, None)
    if recorder is not None and any(recorder.pending_gates.values()):
        lines = [line for failures in recorder.pending_gates.values() for line in failures]
        recorder.pending_gates.clear()
        pytest.fail("\n".join(lines), pytrace=False)
    return outcome

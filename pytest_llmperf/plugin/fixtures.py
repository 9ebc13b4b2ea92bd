"""Fixtures for performance tests; override any of them in your own conftest.py.

- ``llmperf_target``: the (backend, model) cell of the matrix this test runs for.
- ``llmperf_server``: that model being served; one per target, started once per session.
- ``llmperf_load(users=N | rate=R | shape=LoadShape(...), requests=...)``: run a measured
  window (closed loop of N users, open loop at R requests/s, or any shape), get a result;
  ``prompts=`` sends another prompt source than the session's (``llmperf_prompts``).
- ``llmperf_slo.check(result)``: hold the result to thresholds.toml; fails the test if missed.
- A test taking ``llmperf_users`` (an int) runs once per --llmperf-users value, one taking
  ``llmperf_rate`` (req/s) once per --llmperf-rate value.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_llmperf.engines.matrix import Target
from pytest_llmperf.plugin.recorder import ResultRecorder
from pytest_llmperf.plugin.session import RESULTS_KEY

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.load.runner import PerfResult, TimeLimits
    from pytest_llmperf.load.shapes import LoadShape
    from pytest_llmperf.observe.telemetry import Telemetry
    from pytest_llmperf.plugin.slo_check import SLOChecker
    from pytest_llmperf.prompts.builtin import PromptSource
    from pytest_llmperf.settings.resolve import Settings


class LoadFunction(Protocol):
    def __call__(
        self,
        *,
        users: int | None = None,
        rate: float | None = None,
        shape: LoadShape | None = None,
        requests: int | None = None,
        duration_s: float | None = None,
        warmup: int | None = None,
        max_tokens: int | None = None,
        prompts: PromptSource | None = None,
    ) -> PerfResult: ...


@pytest.fixture(scope="session")
def llmperf_settings(pytestconfig: pytest.Config) -> Settings:
    from pytest_llmperf.plugin.session import active_session

    return active_session(pytestconfig).settings


@pytest.fixture(scope="session")
def llmperf_target(request: pytest.FixtureRequest) -> Target:
    """Parametrized by the plugin over the backend x model matrix."""
    param: Target = request.param
    return param


def _terminal_progress(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines ("waiting for vllm on :41234 - 43 s ...") shown past output capture."""

    def report(line: str) -> None:
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if terminal is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            terminal.write_line(f"llmperf: {line}")

    return report


@pytest.fixture(scope="session")
def llmperf_server(
    llmperf_target: Target, llmperf_settings: Settings, pytestconfig: pytest.Config
) -> Iterator[ServedModel]:
    from pytest_llmperf.engines.base import get_backend
    from pytest_llmperf.engines.fit import ModelDoesNotFit
    from pytest_llmperf.engines.lifecycle import ServerStartError, set_progress_reporter
    from pytest_llmperf.engines.modelfetch import ModelFetchError

    set_progress_reporter(_terminal_progress(pytestconfig))
    backend = get_backend(llmperf_target.backend)
    try:
        with backend.serve(llmperf_settings, llmperf_target.entry,
                           llmperf_settings.output_dir) as served:
            yield served
    except ModelDoesNotFit as exc:
        pytest.skip(f"{llmperf_target.id}: {exc}")
    except (ServerStartError, ModelFetchError, ConnectionError) as exc:
        # Session-scoped: pytest reports this once for every test that needed the server.
        pytest.fail(f"{llmperf_target.id}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def llmperf_telemetry(
    llmperf_server: ServedModel, llmperf_settings: Settings
) -> Iterator[Telemetry]:
    """GPU (NVML) and server CPU/RAM samplers for this server's measured windows."""
    from pytest_llmperf.observe.telemetry import Telemetry

    with Telemetry.for_served(llmperf_server,
                              interval_s=llmperf_settings.telemetry_interval) as telemetry:
        telemetry.baseline()  # idle readings before the first load
        yield telemetry


@pytest.fixture(scope="session")
def llmperf_prompts(llmperf_server: ServedModel, llmperf_settings: Settings,
                    pytestconfig: pytest.Config) -> PromptSource:
    """Never-repeating prompts of --llmperf-dataset, one source per served model (no cache
    hits across tests) with a fresh salt per run (none across runs either)."""
    from pytest_llmperf.plugin.session import active_session
    from pytest_llmperf.prompts.sources import prompt_source

    try:
        return prompt_source(active_session(pytestconfig).dataset, llmperf_server,
                             llmperf_settings.seed)
    except ValueError as exc:
        pytest.fail(f"{llmperf_server.description}: {exc}", pytrace=False)


@pytest.fixture
def llmperf_recorder(request: pytest.FixtureRequest) -> ResultRecorder:
    return ResultRecorder(request.node)


@pytest.fixture
def llmperf_load(
    llmperf_server: ServedModel,
    llmperf_prompts: PromptSource,
    llmperf_settings: Settings,
    llmperf_recorder: ResultRecorder,
    llmperf_telemetry: Telemetry,
) -> LoadFunction:
    from pytest_llmperf.load.runner import run_load
    from pytest_llmperf.report.charts import write_timeline_png

    config = llmperf_recorder.item.config
    progress = _terminal_progress(config)

    def load(
        *,
        users: int | None = None,
        rate: float | None = None,
        shape: LoadShape | None = None,
        requests: int | None = None,
        duration_s: float | None = None,
        warmup: int | None = None,
        max_tokens: int | None = None,
        prompts: PromptSource | None = None,
    ) -> PerfResult:
        if requests is None and duration_s is None:
            requests = None if llmperf_settings.duration else llmperf_settings.requests
            duration_s = llmperf_settings.duration
        shape = _shape(llmperf_settings, users=users, rate=rate, shape=shape)
        llmperf_recorder.calls += 1
        served = live_server(llmperf_server, llmperf_recorder, llmperf_telemetry)
        repeats = llmperf_settings.repeats
        windows = []
        for repeat in range(1, repeats + 1):
            # Each repeat is a measured window of its own; the warm-up runs once, before the
            # first (the server is warm for the rest).
            result = run_load(
                served,
                prompts or llmperf_prompts,
                shape=shape,
                requests=requests,
                duration_s=duration_s,
                warmup=(llmperf_settings.warmup if warmup is None else warmup)
                if repeat == 1 else 0,
                max_tokens=max_tokens or llmperf_settings.max_tokens,
                limits=time_limits(llmperf_settings),
                telemetry=llmperf_telemetry,
                progress=progress,
                progress_label=f"{llmperf_recorder.item.name} {shape.label}",
                client_processes=llmperf_settings.client_processes,
                event_loop=llmperf_settings.event_loop,
            )
            _fail_if_server_died(served, result, llmperf_recorder)
            png = None
            if result.telemetry is not None:
                png = write_timeline_png(
                    dict(result.telemetry),
                    llmperf_settings.output_dir / _png_name(llmperf_recorder))
            llmperf_recorder.add(result, png, call=llmperf_recorder.calls,
                                 repeat=repeat if repeats > 1 else None)
            windows.append(result)
        result = dataclasses.replace(windows[0], repeats=tuple(windows[1:]))
        llmperf_recorder.compare(result)
        return result

    return load


def _shape(settings: Settings, *, users: int | None, rate: float | None,
           shape: LoadShape | None) -> LoadShape:
    """The one load a call asked for: ``users`` (with --llmperf-ramp), ``rate`` (with the
    run's arrivals, burstiness and cap) or a whole ``shape``; one user when none is given."""
    from pytest_llmperf.load.shapes import closed_shape, open_shape

    if sum(x is not None for x in (users, rate, shape)) > 1:
        raise TypeError("llmperf_load takes one of users=, rate= or shape=")
    if shape is not None:
        return shape
    if rate is not None:
        return open_shape(settings, rate)
    return closed_shape(settings, users or 1)


_RESTARTED = pytest.StashKey[dict[int, "ServedModel"]]()


def live_server(served: ServedModel, recorder: ResultRecorder,
                telemetry: Telemetry | None) -> ServedModel:
    """``served``; or, when its launched server died during an earlier test, that server
    started again (once per session: a server that dies twice fails the tests after it).
    The restart is said in the terminal and in the test's junit properties."""
    from pytest_llmperf.engines.lifecycle import ServerStartError

    config = recorder.item.config
    restarted = config.stash.setdefault(_RESTARTED, {})
    current = restarted.get(id(served), served)
    if current.check_alive is None or current.restart is None:
        return current
    try:
        current.check_alive()
        return current
    except ServerStartError as exc:
        death = exc
    died = str(death).splitlines()[0]
    if id(served) in restarted:
        pytest.fail(f"{served.description}: {death}\n(it was started again once already this "
                    "session; not again)", pytrace=False)
    failed_start = None
    try:
        pid = current.restart()
    except ServerStartError as exc:
        failed_start = exc
    if failed_start is not None:
        pytest.fail(f"{served.description}: it died ({died}) and did not start again: "
                    f"{failed_start}", pytrace=False)
    current = dataclasses.replace(served, server_pid=pid)
    restarted[id(served)] = current
    if telemetry is not None:
        telemetry.follow(pid)
    _terminal_progress(config)(f"{served.description}: the server died in an earlier test "
                               f"({died}); started it again, once (pid {pid})")
    recorder.item.user_properties.append(("llmperf.server_restarted", died))
    return current


def time_limits(settings: Settings) -> TimeLimits:
    """The run's --llmperf-request-timeout, --llmperf-ttft-timeout, --llmperf-window-timeout."""
    from pytest_llmperf.load.runner import TimeLimits

    return TimeLimits(settings.request_timeout, settings.ttft_timeout, settings.window_timeout)


def _fail_if_server_died(served: ServedModel, result: PerfResult,
                         recorder: ResultRecorder | None = None) -> None:
    """Failed requests from a server that has died: say why it died (its exit code, an
    out-of-memory line from its log) instead of leaving only the connection errors.  The
    requests the death cost are failures of kind ``server_died``; with a ``recorder`` the
    window is recorded first, so the report and the result store show it."""
    from pytest_llmperf.engines.lifecycle import ServerStartError
    from pytest_llmperf.results.errors import error_summary

    if served.check_alive is None or not any(r.error for r in result.run.records):
        return
    try:
        served.check_alive()
    except ServerStartError as exc:
        result = lost_to_the_death(result)
        if recorder is not None:
            recorder.add(result, None, call=recorder.calls)
        summary = error_summary(result.run.records)
        pytest.fail(f"{served.description}: {exc}" + (f"\n{summary}" if summary else ""),
                    pytrace=False)


# Failures a dying server gives its requests in flight (an HTTP error it sent is its own).
_DEATH_KINDS = frozenset({"connection", "truncated", "timeout", "empty"})


def lost_to_the_death(result: PerfResult) -> PerfResult:
    """``result`` with the requests the server's death failed marked ``server_died``."""
    from pytest_llmperf.results.errors import ErrorKind, kind_of
    from pytest_llmperf.results.metrics import summarize

    records = tuple(
        dataclasses.replace(r, error_kind=ErrorKind.SERVER_DIED.value)
        if kind_of(r) in _DEATH_KINDS else r for r in result.run.records)
    run = dataclasses.replace(result.run, records=records)
    metrics = summarize(run)
    if result.telemetry is not None:
        metrics = metrics.with_resources(result.telemetry["metrics"])
    return dataclasses.replace(result, run=run, metrics=metrics)


def _png_name(recorder: ResultRecorder) -> str:
    """``test_x.llamacpp-smollm2-135m.1-timeline.png``: no brackets or spaces to quote."""
    count = len(recorder.item.stash.get(RESULTS_KEY, [])) + 1
    name = recorder.item.name.replace("[", ".").replace("]", "")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"{name}.{count}-timeline.png"


@pytest.fixture
def llmperf_slo(request: pytest.FixtureRequest, llmperf_recorder: ResultRecorder) -> SLOChecker:
    from pytest_llmperf.plugin.slo_check import SLOChecker

    return SLOChecker(request, llmperf_recorder)

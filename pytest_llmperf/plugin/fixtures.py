"""Fixtures for performance tests; override any of them in your own conftest.py.

Each is an adapter of the library (:class:`pytest_llmperf.bench.Bench`): it measures with the
session's bench and records what came back for the reports, junit and the baseline comparison.

- ``llmperf_target``: the (backend, model) cell of the matrix this test runs for.
- ``llmperf_server``: that model being served; one per target, started once per session.
- ``llmperf_bench``: the session's bench on that server (prompts, telemetry, supervision).
- ``llmperf_load(users=N | rate=R | shape=LoadShape(...), requests=...)``: run a measured
  window (closed loop of N users, open loop at R requests/s, or any shape), get a
  :class:`~pytest_llmperf.results.window.WindowResult`; ``prompts=`` sends another prompt source
  than the session's (``llmperf_prompts``).
- ``llmperf_slo.check(result)``: hold the result to thresholds.toml; fails the test if missed.
- A test taking ``llmperf_users`` (an int) runs once per --llmperf-users value, one taking
  ``llmperf_rate`` (req/s) once per --llmperf-rate value.
- ``@pytest.mark.llmperf(requests=16, ...)`` changes the test's own load, search and check
  settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_llmperf.engines.matrix import Target
from pytest_llmperf.plugin.recorder import RECORDER_KEY, ResultRecorder

if TYPE_CHECKING:
    from pytest_llmperf.bench.bench import Bench
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.observe.telemetry import Telemetry
    from pytest_llmperf.plugin.slo_check import SLOChecker
    from pytest_llmperf.prompts.builtin import PromptSource
    from pytest_llmperf.results.load_shape import LoadShape
    from pytest_llmperf.results.window import WindowResult
    from pytest_llmperf.settings.groups import Settings

__all__ = ["LoadFunction", "measuring", "terminal_progress"]


class LoadFunction(Protocol):
    """``llmperf_load``'s type, for annotating tests."""

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
    ) -> WindowResult: ...


@pytest.fixture(scope="session")
def llmperf_settings(pytestconfig: pytest.Config) -> Settings:
    """The session's settings (a test's own, with its @pytest.mark.llmperf, are its bench's)."""
    from pytest_llmperf.plugin.session import active_session

    return active_session(pytestconfig).settings


@pytest.fixture(scope="session")
def llmperf_target(request: pytest.FixtureRequest) -> Target:
    """Parametrized by the plugin over the backend x model matrix."""
    param: Target = request.param
    return param


def terminal_progress(config: pytest.Config) -> Callable[[str], None]:
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

    set_progress_reporter(terminal_progress(pytestconfig))
    backend = get_backend(llmperf_target.backend)
    try:
        with backend.serve(llmperf_settings.server, llmperf_target.entry,
                           llmperf_settings.server.output_dir) as served:
            served = served.with_api(llmperf_settings.load.endpoint).watching(  # type: ignore[arg-type]
                llmperf_settings.server.metrics_urls)
            yield _with_first_request(served, llmperf_settings)
    except ModelDoesNotFit as exc:
        pytest.skip(f"{llmperf_target.id}: {exc}")
    except (ServerStartError, ModelFetchError, ConnectionError) as exc:
        # Session-scoped: pytest reports this once for every test that needed the server.
        pytest.fail(f"{llmperf_target.id}: {exc}", pytrace=False)


def _with_first_request(served: ServedModel, settings: Settings) -> ServedModel:
    """A launched engine's first request once ready, timed (first_ttft_ms); an attached one
    has answered others before it (and embeddings stream no first token)."""
    if served.startup_s is None or settings.load.endpoint == "embeddings":
        return served
    from pytest_llmperf.load.first_request import first_request_ttft_ms

    first = first_request_ttft_ms(served, seed=settings.load.seed,
                                  limits=settings.load.limits)
    return dataclasses.replace(served, first_ttft_ms=first)


@pytest.fixture(scope="session")
def llmperf_telemetry(
    llmperf_server: ServedModel, llmperf_settings: Settings
) -> Iterator[Telemetry]:
    """GPU (NVML) and server CPU/RAM samplers for this server's measured windows."""
    from pytest_llmperf.observe.telemetry import Telemetry

    with Telemetry.for_served(llmperf_server,
                              interval_s=llmperf_settings.load.telemetry_interval,
                              dcgm_urls=llmperf_settings.server.dcgm_urls) as telemetry:
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
                             llmperf_settings.load.seed)
    except ValueError as exc:
        pytest.fail(f"{llmperf_server.description}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def llmperf_bench(llmperf_server: ServedModel, llmperf_prompts: PromptSource,
                  llmperf_telemetry: Telemetry | None, llmperf_settings: Settings,
                  pytestconfig: pytest.Config) -> Bench:
    """The session's bench on this target's server: it keeps the server alive (started again
    once if it dies) for every test of the target."""
    from pytest_llmperf.bench.serve import open_bench

    return open_bench(llmperf_server, llmperf_prompts, llmperf_telemetry, llmperf_settings,
                      terminal_progress(pytestconfig))


@pytest.fixture
def llmperf_recorder(request: pytest.FixtureRequest) -> ResultRecorder:
    from pytest_llmperf.plugin.session import active_session

    recorder = ResultRecorder(request.node, active_session(request.config))
    request.node.stash[RECORDER_KEY] = recorder
    return recorder


@pytest.fixture
def llmperf_test_bench(llmperf_bench: Bench, llmperf_recorder: ResultRecorder,
                       request: pytest.FixtureRequest) -> Bench:
    """The session's bench with this test's settings (@pytest.mark.llmperf), recording every
    window it measures, and saying in junit when the server was started again."""
    return bench_for_test(llmperf_bench, llmperf_recorder, request)


def settings_for_test(recorder: ResultRecorder, request: pytest.FixtureRequest) -> Settings:
    """The session's settings with this test's @pytest.mark.llmperf; a bad mark fails it."""
    from pytest_llmperf.plugin.session import ActivationError, test_settings

    try:
        return test_settings(recorder.session.settings, request.node)
    except ActivationError as exc:
        pytest.fail(str(exc), pytrace=False)


def bench_for_test(bench: Bench, recorder: ResultRecorder,
                   request: pytest.FixtureRequest) -> Bench:
    """``bench`` with this test's settings, recording its windows in ``recorder``."""
    settings = settings_for_test(recorder, request)

    def restarted(died: str) -> None:
        request.node.user_properties.append(("llmperf.server_restarted", died))

    return bench.observed(progress=terminal_progress(request.config),
                          on_window=recorder.record_window, on_restart=restarted,
                          settings=settings)


@contextlib.contextmanager
def measuring(recorder: ResultRecorder) -> Iterator[None]:
    """A server that died (or cannot be had again) fails the test with why; the window it
    died in is recorded first, so the report and the result store show it.  What the served
    model cannot do (Unsupported: no tokenizer, no prefix cache, no schema sent) skips it."""
    from pytest_llmperf.bench.bench import Unsupported
    from pytest_llmperf.engines.supervise import ServerDied, ServerLost

    try:
        yield
        return
    except Unsupported as exc:
        pytest.skip(str(exc))
    except ServerDied as exc:
        recorder.record_window(exc.window, None)
        why = str(exc)
    except ServerLost as exc:
        why = str(exc)
    pytest.fail(why, pytrace=False)  # outside the handler: no "during handling" chain


@pytest.fixture
def llmperf_load(llmperf_test_bench: Bench, llmperf_recorder: ResultRecorder,
                 request: pytest.FixtureRequest) -> LoadFunction:
    from pytest_llmperf.plugin.slo_check import sizing_checks

    def load(*, users: int | None = None, rate: float | None = None,
             shape: LoadShape | None = None, requests: int | None = None,
             duration_s: float | None = None, warmup: int | None = None,
             max_tokens: int | None = None, prompts: PromptSource | None = None
             ) -> WindowResult:
        served = llmperf_test_bench.served
        with measuring(llmperf_recorder):
            window = llmperf_test_bench.window(
                users=users, rate=rate, shape=shape, requests=requests, duration_s=duration_s,
                warmup=warmup, max_tokens=max_tokens, prompts=prompts,
                label=llmperf_recorder.item.name,
                checks=sizing_checks(request, served.backend, served.model))
        llmperf_recorder.compare(window.windows)
        return window

    return load


@pytest.fixture
def llmperf_slo(request: pytest.FixtureRequest, llmperf_recorder: ResultRecorder) -> SLOChecker:
    from pytest_llmperf.plugin.session import ActivationError, test_settings
    from pytest_llmperf.plugin.slo_check import SLOChecker

    try:
        settings = test_settings(llmperf_recorder.session.settings, request.node)
    except ActivationError as exc:
        pytest.fail(str(exc), pytrace=False)
    return SLOChecker(request, llmperf_recorder, settings.checks)

"""A launched server that died in one test is started again, once, for the next test, and
the run says so; one that dies again fails the tests after it.

The supervision itself is :class:`pytest_llmperf.engines.supervise.Supervisor`, tested here
without pytest; the last test runs it through the plugin, with a bench whose window runner
plays a server that dies when told to.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pytest_llmperf import LoadRun, LoadShape, RequestRecord, ServedModel, TokenSource, WindowResult
from pytest_llmperf.engines.lifecycle import ServerExited, ServerStartError
from pytest_llmperf.engines.supervise import ServerDied, ServerLost, Supervisor


class FakeServer:
    """A launched server's check_alive and restart: it dies when told, starts when asked."""

    def __init__(self, starts_again: bool = True) -> None:
        self.alive = True
        self.pid = 4241
        self.starts_again = starts_again

    def check_alive(self) -> None:
        if not self.alive:
            raise ServerExited("llamacpp exited with code -9 after it was ready\n    (log tail)")

    def restart(self) -> int:
        if not self.starts_again:
            raise ServerStartError("llamacpp was not ready within 900 s")
        self.alive = True
        self.pid += 1
        return self.pid


def served(server: FakeServer) -> ServedModel:
    return ServedModel("llamacpp", "smollm2-135m", None, engine="xllamacpp 1",
                       server_pid=server.pid, check_alive=server.check_alive,
                       restart=server.restart)


def window(server: FakeServer, *, ok: bool) -> WindowResult:
    if ok:
        records = tuple(RequestRecord(i, 0, (10_000_000, 20_000_000), 20_000_000, 2,
                                      TokenSource.USAGE, 10, TokenSource.USAGE, "length")
                        for i in range(4))
    else:
        records = tuple(RequestRecord(i, 0, end_ns=1, error="ClientConnectorError: refused",
                                      error_kind="connection") for i in range(4))
    return WindowResult(served(server).info, LoadShape.closed(1), 2,
                        LoadRun(records, 0, 20_000_000, 1, 0))


def test_a_live_server_is_left_alone() -> None:
    server = FakeServer()
    supervisor = Supervisor(served(server))
    assert supervisor.live().server_pid == 4241
    assert supervisor.restarts == []


def test_a_dead_server_is_started_again_once_and_telemetry_follows_it() -> None:
    server = FakeServer()
    followed: list[int | None] = []
    supervisor = Supervisor(served(server), on_restart=followed.append)
    server.alive = False
    assert supervisor.live().server_pid == 4242
    assert followed == [4242]
    assert supervisor.restarts == ["llamacpp exited with code -9 after it was ready"]
    server.alive = False
    with pytest.raises(ServerLost, match="started again once already this session; not again"):
        supervisor.live()


def test_a_server_that_does_not_start_again_is_lost_with_both_reasons() -> None:
    server = FakeServer(starts_again=False)
    supervisor = Supervisor(served(server))
    server.alive = False
    with pytest.raises(ServerLost) as lost:
        supervisor.live()
    assert "it died (llamacpp exited with code -9 after it was ready) and did not start again: " \
           "llamacpp was not ready within 900 s" in str(lost.value)


def test_requests_a_death_cost_are_marked_and_the_window_travels_with_the_error() -> None:
    server = FakeServer()
    supervisor = Supervisor(served(server))
    supervisor.check_window(window(server, ok=True))  # nothing failed: nothing to ask
    server.alive = False
    supervisor.check_window(window(server, ok=True))  # it died after: not this window's
    with pytest.raises(ServerDied) as died:
        supervisor.check_window(window(server, ok=False))
    assert str(died.value).startswith("smollm2-135m on llamacpp (xllamacpp 1): llamacpp exited "
                                      "with code -9 after it was ready")
    assert '4 of 4 requests failed: server_died 4 (e.g. "ClientConnectorError: refused")' \
        in str(died.value)
    assert [r.error_kind for r in died.value.window.run.records] == ["server_died"] * 4
    assert died.value.window.metrics.value("errors.server_died") == 4


def test_an_attached_server_is_never_asked() -> None:
    attached = ServedModel("openai", "m", None, engine="vllm at http://x")
    supervisor = Supervisor(attached)
    assert supervisor.live() is attached
    supervisor.check_window(window(FakeServer(), ok=False))  # no process of ours: no verdict


RESTART_CONFTEST = """
import dataclasses

import pytest
from pytest_llmperf import LoadRun, RequestRecord, ServedModel, TokenSource, WindowResult
from pytest_llmperf.bench import open_bench
from pytest_llmperf.engines.lifecycle import ServerExited

STATE = {"alive": True, "starts": 1, "die": False}


def check_alive():
    if not STATE["alive"]:
        raise ServerExited("llamacpp exited with code -9 after it was ready\\n    (log tail)")


def restart():
    STATE["alive"] = True
    STATE["starts"] += 1
    return 4240 + STATE["starts"]


@pytest.fixture(scope="session")
def llmperf_server(llmperf_target):
    return ServedModel(llmperf_target.backend, llmperf_target.model, None, engine="xllamacpp 1",
                       server_pid=4241, check_alive=check_alive, restart=restart)


@pytest.fixture
def kill_server():
    def kill():
        STATE["die"] = True  # during the next load
    return kill


@pytest.fixture(scope="session")
def llmperf_bench(llmperf_server, llmperf_prompts, llmperf_settings):
    # Good answers from a live server, refused connections from a dead one.
    def answers(served, prompts, *, shape, requests, **_):
        if STATE["die"]:
            STATE["alive"], STATE["die"] = False, False
        if STATE["alive"]:
            records = tuple(RequestRecord(i, 0, (10_000_000, 20_000_000), 20_000_000, 2,
                                          TokenSource.USAGE, 10, TokenSource.USAGE, "length")
                            for i in range(requests))
        else:
            records = tuple(RequestRecord(i, 0, end_ns=1, error="ClientConnectorError: refused",
                                          error_kind="connection") for i in range(requests))
        return WindowResult(served.info, shape, 2, LoadRun(records, 0, 20_000_000,
                                                           shape.users, 0))

    bench = open_bench(llmperf_server, llmperf_prompts, None, llmperf_settings)
    return dataclasses.replace(bench, runner=answers)
"""

TESTS = """
def test_1_dies(llmperf_load, llmperf_slo, kill_server):
    kill_server()
    llmperf_slo.check(llmperf_load(users=1, requests=4))


def test_2_after_the_crash(llmperf_load, llmperf_slo, llmperf_bench):
    result = llmperf_load(users=1, requests=4)
    assert llmperf_bench.served.server_pid == 4242  # the new process, not the dead one's pid
    llmperf_slo.check(result)


def test_3_dies_again(llmperf_load, llmperf_slo, kill_server):
    kill_server()
    llmperf_slo.check(llmperf_load(users=1, requests=4))


def test_4_after_the_second_crash(llmperf_load, llmperf_slo):
    llmperf_slo.check(llmperf_load(users=1, requests=4))
"""


def test_a_crashed_server_is_started_again_once(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMPERF_BACKEND", raising=False)
    monkeypatch.delenv("LLMPERF_MODEL", raising=False)
    pytester.makeconftest(RESTART_CONFTEST)
    pytester.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n')
    pytester.makepyfile(test_suite=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines([
        "llmperf: smollm2-135m on llamacpp (xllamacpp 1): the server died in an earlier test "
        "(llamacpp exited with code -9 after it was ready); started it again, once (pid 4242)",
    ])
    result.stdout.fnmatch_lines(["FAILED test_suite.py::test_1_dies*",
                                 "FAILED test_suite.py::test_3_dies_again*",
                                 "FAILED test_suite.py::test_4_after_the_second_crash*"])
    assert "started again once already this session; not again" in result.stdout.str()
    cases = {case.get("name"): case for case in
             ET.parse(pytester.path / "junit.xml").iter("testcase")}
    restarted = {p.get("name"): p.get("value")
                 for p in cases["test_2_after_the_crash[llamacpp-smollm2-135m]"].iter("property")}
    assert restarted["llmperf.server_restarted"] == (
        "llamacpp exited with code -9 after it was ready")
    died = {p.get("name"): p.get("value")
            for p in cases["test_1_dies[llamacpp-smollm2-135m]"].iter("property")}
    assert died["llmperf.errors.server_died"] == "4.0"  # the window the death cost, recorded

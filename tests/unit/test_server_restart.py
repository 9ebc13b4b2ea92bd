"""A launched server that died in one test is started again, once, for the next test, and
the run says so; one that dies again fails the tests after it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

RESTART_CONFTEST = """
import pytest
from pytest_llmperf.load import runner
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
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
    return ServedModel(llmperf_target.backend, llmperf_target.model,
                       Endpoint("http://127.0.0.1:9/v1", "m"), engine="xllamacpp 1",
                       server_pid=4241, check_alive=check_alive, restart=restart)


@pytest.fixture(scope="session")
def llmperf_telemetry():
    return None


@pytest.fixture
def kill_server():
    def kill():
        STATE["die"] = True  # during the next load
    return kill


@pytest.fixture(autouse=True)
def answers(monkeypatch):
    # Good answers from a live server, refused connections from a dead one.
    def run_load(served, prompts, *, shape, requests, **_):
        if STATE["die"]:
            STATE["alive"], STATE["die"] = False, False
        if STATE["alive"]:
            records = tuple(RequestRecord(i, 0, (10_000_000, 20_000_000), 20_000_000, 2,
                                          TokenSource.USAGE, 10, TokenSource.USAGE, "length")
                            for i in range(requests))
        else:
            records = tuple(RequestRecord(i, 0, end_ns=1, error="ClientConnectorError: refused",
                                          error_kind="connection") for i in range(requests))
        run = LoadRun(records, 0, 20_000_000, shape.users, 0)
        return runner.PerfResult(served, run, summarize(run), shape, 2)

    monkeypatch.setattr(runner, "run_load", run_load)
"""

TESTS = """
def test_1_dies(llmperf_load, llmperf_slo, kill_server):
    kill_server()
    llmperf_slo.check(llmperf_load(users=1, requests=4))


def test_2_after_the_crash(llmperf_load, llmperf_slo, llmperf_server):
    result = llmperf_load(users=1, requests=4)
    assert result.served.server_pid == 4242  # the new process, not the dead one's pid
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

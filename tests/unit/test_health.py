"""The tool checks itself: a window is marked client-bound when its event loop ran late, and
disturbed when other processes took the machine's CPU; --llmperf-strict-validity fails it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import psutil
import pytest

from pytest_llmperf.observe.health import LIMITS, HealthWatch, judge_health, send_lateness
from pytest_llmperf.results.records import RequestRecord

MS = 1_000_000

SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


def _watch_window(watch: HealthWatch, seconds: float, block_s: float = 0.0) -> None:
    """A window of ``seconds`` on an event loop that runs the lag probe; ``block_s`` > 0 blocks
    the loop that long every 20 ms, as a client drowning in chunks would."""

    async def window() -> None:
        probe = asyncio.create_task(watch.lag_probe())
        watch.window_started()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.02)
            busy_until = time.perf_counter() + block_s
            while time.perf_counter() < busy_until:  # the loop can do nothing else meanwhile
                pass
        watch.window_ended()
        probe.cancel()

    asyncio.run(window())


def test_a_blocked_event_loop_marks_the_window_client_bound() -> None:
    idle, busy = HealthWatch(None, in_process=False), HealthWatch(None, in_process=False)
    _watch_window(idle, 0.6)
    _watch_window(busy, 0.8, block_s=0.06)
    quiet, drowned = judge_health(idle.figures, []), judge_health(busy.figures, [])
    assert quiet.figures["client_cpu_pct"] < 50, quiet  # an idle loop costs next to nothing
    # Blocked for 60 ms at a time, the 5 ms timer fires up to 60 ms late.
    assert drowned.figures["loop_lag_ms_p99"] > max(
        40.0, quiet.figures["loop_lag_ms_p99"] + 20), drowned
    assert any(c.startswith("loop_lag_ms_p99 ") for c in drowned.client_bound), drowned
    # Busy-waiting in the loop is the client's own CPU, not other processes'.
    assert drowned.figures["client_cpu_pct"] > quiet.figures["client_cpu_pct"] + 20, (
        quiet, drowned)


def test_other_processes_burning_every_core_mark_the_window_disturbed() -> None:
    cores = len(os.sched_getaffinity(0))
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(cores)]
    try:
        time.sleep(0.3)  # let them start
        watch = HealthWatch(None, in_process=False)
        _watch_window(watch, 1.5)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    health = judge_health(watch.figures, [])
    assert health.figures["other_cpu_pct"] > LIMITS["other_cpu_pct"], health
    assert health.disturbed and health.disturbed[0].startswith("other_cpu_pct "), health


def test_the_server_tree_is_not_other_work() -> None:
    # A spinner watched as the served process, and the same window watched without it: the
    # difference is its core, counted as the server's own in the first.
    # The spinner's own CPU over the window is the truth: on a busy machine it gets less than
    # a core, and the difference must be what it got, not a core it did not.
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    served, unserved = HealthWatch(spinner.pid, in_process=False), HealthWatch(None,
                                                                               in_process=False)
    process = psutil.Process(spinner.pid)
    try:
        time.sleep(0.3)

        async def window() -> float:
            for watch in (served, unserved):
                watch.window_started()
            start = process.cpu_times()
            await asyncio.sleep(1.2)
            end = process.cpu_times()
            for watch in (served, unserved):
                watch.window_ended()
            return end.user + end.system - start.user - start.system

        spun_s = asyncio.run(window())
    finally:
        spinner.kill()
        spinner.wait()
    cores = len(os.sched_getaffinity(0))
    spun_pct = spun_s / served.figures["window_s"] / cores * 100
    apart = unserved.figures["other_cpu_pct"] - served.figures["other_cpu_pct"]
    assert spun_pct > 0, "the spinner got no CPU at all"
    assert apart == pytest.approx(spun_pct, abs=0.25 * 100 / cores), (
        spun_pct, served.figures, unserved.figures)


def test_send_lateness_and_missing_figures() -> None:
    health = judge_health({"other_cpu_pct": 3.0, "loop_lag_ms_p99": 1.0},
                          [0.5] * 90 + [40.0] * 10)
    assert health.figures["send_late_ms_p99"] == 40.0
    assert health.client_bound == ("send_late_ms_p99 40 > 10",)
    assert health.disturbed == ()
    assert "steal_pct" not in health.figures  # not reported by this kernel here: not invented


def test_one_late_send_is_a_hiccup_and_two_mark_the_window() -> None:
    # 12 requests at 0.5 req/s with a 313 ms TTFT median: the limit is 15.7 ms, and the p99
    # of 12 sends is the latest one.
    once = judge_health({}, [0.5] * 11 + [18.1], 15.68)
    assert once.figures["send_late_ms_p99"] > 15.68 and once.client_bound == ()
    twice = judge_health({}, [0.5] * 10 + [18.1, 17.0], 15.68)
    assert twice.client_bound == ("send_late_ms_p99 17.98 > 15.68",)


def _open_loop(gap_ms: float, ttft_ms: float, late_ms: float, queued_ms: float = 0.0
               ) -> list[RequestRecord]:
    """Twenty requests due ``gap_ms`` apart, each sent ``late_ms`` + ``queued_ms`` after it
    was due (``queued_ms`` of it waiting for a max_concurrency slot)."""
    records = []
    for i in range(20):
        due = int(i * gap_ms * MS)
        send = due + int((late_ms + queued_ms) * MS)
        first = send + int(ttft_ms * MS)
        records.append(RequestRecord(i, send, (first, first + MS), first + MS, 2,
                                     scheduled_ns=due, queued_ns=int(queued_ms * MS)))
    return records


@pytest.mark.parametrize(("gap_ms", "ttft_ms", "late_ms", "limit_ms", "bound"), [
    (2000, 1000, 16, 50, False),  # 0.5 req/s, 1 s TTFT: 16 ms late changes nothing
    (2000, 1000, 60, 50, True),
    (2000, 100, 16, 10, True),  # a fast answer: 16 ms is 16 % of its TTFT from schedule
    (20, 1000, 16, 10, True),  # 50 req/s: 16 ms is most of the gap between arrivals
    (20, 50, 5, 10, False),
])
def test_the_lateness_limit_follows_the_gap_and_the_ttft(
        gap_ms: float, ttft_ms: float, late_ms: float, limit_ms: float, bound: bool) -> None:
    late, limit = send_lateness(_open_loop(gap_ms, ttft_ms, late_ms))
    assert limit == pytest.approx(limit_ms)
    assert late == pytest.approx([late_ms] * 20)
    health = judge_health({}, late, limit)
    assert health.limits["send_late_ms_p99"] == pytest.approx(limit_ms)
    assert bool(health.client_bound) is bound, health


def test_the_wait_for_a_concurrency_slot_is_not_the_clients_lateness() -> None:
    late, _ = send_lateness(_open_loop(20, 50, 1, queued_ms=500))
    assert max(late) == pytest.approx(1)
    assert send_lateness([RequestRecord(0, 0, (MS,), MS, 1)]) == ([], 10.0)  # a closed loop


STRICT_CONFTEST = """
import dataclasses

import pytest
from pytest_llmperf.bench import open_bench
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.observe.health import judge_health


@pytest.fixture(scope="session")
def llmperf_server(llmperf_target):
    return ServedModel(llmperf_target.backend, llmperf_target.model,
                       Endpoint("http://127.0.0.1:9/v1", "m"), engine="stub 1")


@pytest.fixture(scope="session")
def llmperf_telemetry():
    return None


@pytest.fixture(scope="session")
def llmperf_bench(llmperf_server, llmperf_prompts, llmperf_telemetry, llmperf_settings):
    # Good answers, measured while other work took 70 % of the machine.
    def busy_machine(served, prompts, *, shape, requests, **_):
        records = tuple(RequestRecord(i, 0, (10_000_000, 20_000_000), 20_000_000, 2,
                                      TokenSource.USAGE, 10, TokenSource.USAGE, "length")
                        for i in range(requests))
        run = LoadRun(records, 0, 20_000_000, shape.users, 0)
        return WindowResult(served.info, shape, 2, run,
                            health=judge_health({"other_cpu_pct": 70.0}, []))

    bench = open_bench(llmperf_server, llmperf_prompts, llmperf_telemetry, llmperf_settings)
    return dataclasses.replace(bench, runner=busy_machine)
"""


@pytest.mark.parametrize("strict", [False, True])
def test_strict_validity_fails_a_disturbed_window(pytester: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  strict: bool) -> None:
    monkeypatch.delenv("LLMPERF_BACKEND", raising=False)
    monkeypatch.delenv("LLMPERF_MODEL", raising=False)
    pytester.makeconftest(STRICT_CONFTEST)
    pytester.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n')
    pytester.makepyfile(test_suite="""
def test_load(llmperf_load, llmperf_slo):
    llmperf_slo.check(llmperf_load(users=2, requests=4))
""")
    result = pytester.runpytest_subprocess(*(["--llmperf-strict-validity"] if strict else []))
    result.assert_outcomes(failed=int(strict), passed=int(not strict))
    # Marked either way: in the summary table and in its own section.
    result.stdout.fnmatch_lines(["*2 users DISTURBED*",
                                 "test_load* (2 users): disturbed: other_cpu_pct 70 > 25"])
    if strict:
        result.stdout.fnmatch_lines([
            "*the numbers cannot be trusted (--llmperf-strict-validity): disturbed: "
            "other_cpu_pct 70 > 25"])


def test_an_attached_server_on_this_machine_is_found_by_its_port() -> None:
    import http.server

    from pytest_llmperf.observe.health import local_server_pid

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    try:
        port = server.server_address[1]
        assert local_server_pid(f"http://127.0.0.1:{port}/v1") == os.getpid()
    finally:
        server.server_close()
    assert local_server_pid("http://gpu-box.example:8000/v1") is None  # not ours to see

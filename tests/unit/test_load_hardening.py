"""What the best load tools test their load with: an open loop at an absurd rate, an uncapped
open loop against a server it overloads, and a closed loop of more users than the client may
open sockets for.  Each ends, in its bounds, with an honest verdict.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_llmperf.load import open_loop
from pytest_llmperf.load.open_loop import run_open_loop, schedule
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.pacing import overload
from pytest_llmperf.results.records import LoadRun, RequestRecord
from tests.fakes.stub_process import FAST_STUB, running_stub
from tests.unit.test_open_loop import SleepingClient

ROOT = Path(__file__).resolve().parents[2]


def offered(shape: LoadShape, client: object, **kwargs: object) -> LoadRun:
    return asyncio.run(run_open_loop(client, BuiltinPrompts(seed=0), shape=shape,  # type: ignore[arg-type]
                                     **kwargs))  # type: ignore[arg-type]


# --- an open loop at rate 1e9 -----------------------------------------------------------------


def test_a_rate_of_a_billion_is_a_burst_of_the_requests_asked_for() -> None:
    client = SleepingClient(0.05)
    loaded = offered(LoadShape.open(1e9), client, requests=300)
    assert len(loaded.records) == 300 and all(r.ok for r in loaded.records)
    assert client.peak == 300  # all in flight at once: a burst
    metrics = summarize(loaded)  # no division by a schedule that spans no time
    assert overload(loaded, metrics.scalars) is None
    assert "queue_growth" not in metrics.scalars  # a slope over nanoseconds is no queue


SCHEDULE_IN_A_SMALL_ADDRESS_SPACE = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # 3 GiB: 1e9 arrivals need 8
from pytest_llmperf.load.open_loop import MAX_ARRIVALS, schedule
from pytest_llmperf.results.load_shape import LoadShape
started = time.monotonic()
for arrivals in ("poisson", "constant"):
    offsets, measured = schedule(LoadShape.open(float(sys.argv[1]), arrivals=arrivals), 3, None,
                                 float(sys.argv[2]))
    assert measured == MAX_ARRIVALS - 3 and len(offsets) == MAX_ARRIVALS, (measured, len(offsets))
    assert offsets == sorted(offsets) and offsets[-1] < 1e-3, offsets[-1]  # a burst
print(time.monotonic() - started)
"""


@pytest.mark.parametrize(("rate", "duration"), [(1e9, 0.5), (1e300, 86399.0)])
def test_a_duration_at_a_rate_of_a_billion_schedules_a_bounded_burst(rate: float,
                                                                   duration: float) -> None:
    """1e9 arrivals a second for half a second would be half a billion: the schedule holds at
    most MAX_ARRIVALS, all due at once (in a process whose address space could not hold the
    half billion, should that ever be tried again)."""
    done = subprocess.run([sys.executable, "-c", SCHEDULE_IN_A_SMALL_ADDRESS_SPACE, str(rate),
                           str(duration)], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_window_at_a_rate_of_a_billion_says_what_it_did_not_send(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(open_loop, "MAX_ARRIVALS", 400)
    client = SleepingClient(0.02)
    loaded = offered(LoadShape.open(1e9), client, duration_s=0.5, warmup=2)
    assert len(loaded.records) == 398 and client.peak == 400
    assert loaded.stopped_early is not None
    assert "5e+08 arrivals" in loaded.stopped_early and "400" in loaded.stopped_early
    assert loaded.duration_s < 5  # a burst's answers, not half a second per thousand
    # A rate and a duration that fit are as they were: every arrival of the duration.
    assert schedule(LoadShape.open(100.0, arrivals="constant"), 0, None, 1.0)[1] == 100


# --- an uncapped open loop at overload --------------------------------------------------------


class Server:
    """A scripted server with ``slots`` requests in service at once, ``service_s`` each: it
    sustains ``slots / service_s`` requests a second; more wait in its queue."""

    def __init__(self, slots: int, service_s: float) -> None:
        self.slots = asyncio.Semaphore(slots)
        self.service_s = service_s

    async def send(self, request_id: int, prompt: str) -> RequestRecord:
        send_ns = time.perf_counter_ns()
        async with self.slots:
            await asyncio.sleep(self.service_s / 2)
            first = time.perf_counter_ns()
            await asyncio.sleep(self.service_s / 2)
        end = time.perf_counter_ns()
        return RequestRecord(request_id, send_ns, (first, end), end, 2, input_tokens=5)


def test_an_uncapped_open_loop_at_overload_ends_at_its_window_timeout_and_says_overloaded(
        ) -> None:
    """Offered 200 req/s for 2 s against a server that sustains 50: the queue grows through
    the window; its 1.5 s timeout cuts what is still queued, and the verdict is overload."""
    started = time.monotonic()

    async def run() -> LoadRun:
        return await run_open_loop(Server(2, 0.04), BuiltinPrompts(seed=0),  # type: ignore[arg-type]
                                   shape=LoadShape.open(200.0, arrivals="constant"),
                                   duration_s=2.0, cut_after_s=1.5)
    loaded = asyncio.run(run())
    assert time.monotonic() - started < 8  # the window timeout ended it (else about 8 s)
    assert loaded.stopped_early is not None and "deadline of 1.5 s" in loaded.stopped_early
    kinds = {r.error_kind for r in loaded.records}
    assert kinds == {None, "timeout"}, kinds
    metrics = summarize(loaded)
    verdict = overload(loaded, metrics.scalars)
    assert verdict is not None and verdict.startswith("overloaded: offered 200 req/s"), (
        verdict, metrics.scalars)


# --- a closed loop of 1024 users under a low RLIMIT_NOFILE ----------------------------------

LOW_NOFILE = """
import collections, json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))  # and it cannot be raised
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.settings.groups import TimeLimits

served = ServedModel("openai", "stub", Endpoint(sys.argv[1], "stub"), engine="stub")
result = run_load(served, BuiltinPrompts(), users=1024, requests=2048, max_tokens=4,
                  limits=TimeLimits(request_s=60.0, window_s=60.0))
kinds = collections.Counter(r.error_kind for r in result.run.records)
print(json.dumps({"kinds": kinds, "client_bound": list(result.health.client_bound),
                  "figures": result.health.figures, "stopped": result.run.stopped_early,
                  "errors": sorted({(r.error or "")[:200] for r in result.run.records
                                    if r.error_kind and r.error_kind != "client_limit"})[:5]}))
"""


def test_a_thousand_users_under_a_low_open_files_limit_are_the_clients_limit() -> None:
    with running_stub("--first-ms", "5", "--token-ms", "1", script=FAST_STUB) as url:
        done = subprocess.run([sys.executable, "-c", LOW_NOFILE, url], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    kinds = seen["kinds"]
    assert set(kinds) == {"null", "client_limit"} or set(kinds) <= {None, "client_limit"}, seen
    assert kinds.get("client_limit", 0) > 0 and kinds.get("null", 0) > 0, seen
    assert any("client_limit" in mark and "file descriptors" in mark
               for mark in seen["client_bound"]), seen
    assert seen["figures"].get("open_files_limit") == 256, seen

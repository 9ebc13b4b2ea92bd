"""--llmperf-client-processes: one load offered from several forked client processes.

A fake client (no network) returns each request's prompt and the process that sent it, so
the merge can be checked exactly: every request once, every prompt once and in the order one
process draws them, one schedule, one clock.  A real stream check against the measuring stub
is at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.processes import deal_arrivals
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.load.shapes import arrival_offsets
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.prompts.trace_files import Trace, TraceRequest
from pytest_llmperf.prompts.trace_prompts import TracePrompts, replay_shape
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import RequestRecord, TokenSource
from pytest_llmperf.settings.resolve import SettingError, resolve_settings
from tests.fakes.signals import default_signals
from tests.fakes.stub_process import FAST_STUB, running_stub
from tests.unit.test_datasets import WordTokenizer


class Numbered:
    """A prompt source of ``p0``, ``p1``, ... so the order they are drawn in shows."""

    about_caching = False

    def __init__(self) -> None:
        self.drawn = 0

    def prepare(self, count: int) -> None:
        pass

    def next_prompt(self) -> Prompt:
        self.drawn += 1
        return Prompt(f"p{self.drawn - 1}")

    def describe(self) -> dict[str, object]:
        return {"dataset": "numbered"}


class Echo:
    """Answers after ``delay_s``; the record names the prompt and this process's pid."""

    def __init__(self, delay_s: float, on_send: Callable[[], None] | None = None) -> None:
        self.delay_s, self.on_send = delay_s, on_send

    async def send(self, request_id: int, prompt: Prompt) -> RequestRecord:
        if self.on_send:
            self.on_send()
        sent = time.perf_counter_ns()
        await asyncio.sleep(self.delay_s)
        first = time.perf_counter_ns()
        return RequestRecord(
            request_id=request_id, send_ns=sent, chunk_ns=(first, time.perf_counter_ns()),
            end_ns=time.perf_counter_ns(), output_tokens=2,
            output_token_source=TokenSource.USAGE, finish_reason="length",
            # The prompt's number (p0, p1, ...), where the record keeps a number to the end.
            input_tokens=int(prompt.text[1:]) if prompt.text[1:].isdigit() else 0,
            input_token_source=TokenSource.USAGE,
            server_timings={"pid": float(os.getpid())})


def served_by(client: Echo) -> ServedModel:
    @contextlib.asynccontextmanager
    async def open_client(max_tokens: int, timeout_s: float,
                          first_token_timeout_s: float | None) -> AsyncIterator[Echo]:
        yield client

    return ServedModel("openai", "echo", Endpoint("http://127.0.0.1:9/v1", "echo"),
                       engine="echo", open_client=open_client)


def pids(result_records: tuple[RequestRecord, ...]) -> set[float]:
    return {r.server_timings["pid"] for r in result_records}


@pytest.mark.parametrize("processes", [2, 3])
def test_a_closed_loop_merges_every_request_once_with_the_prompts_of_one_process(
        processes: int) -> None:
    prompts = Numbered()
    result = run_load(served_by(Echo(0.01)), prompts, users=6, requests=31, warmup=5,
                      max_tokens=2, client_processes=processes)
    records = result.run.records
    assert [r.request_id for r in records] == list(range(31))
    # Request i got prompt warmup + i, as one process hands them out.
    assert [r.input_tokens for r in records] == [5 + i for i in range(31)]
    assert len(pids(records)) == processes and os.getpid() not in pids(records)
    assert prompts.drawn == 36  # the session's source goes on after the run's prompts
    assert result.run.concurrency == 6 and result.run.warmup_requests == 5
    assert result.run.window_start_ns <= min(r.send_ns for r in records)
    assert result.run.window_end_ns == max(r.end_ns for r in records)
    assert result.health is not None and result.health.figures["client_processes"] == processes
    assert result.metrics.scalars["completed"] == 31


def test_an_open_loop_keeps_one_schedule_across_processes() -> None:
    shape = LoadShape.open(40.0, seed=7)
    result = run_load(served_by(Echo(0.05)), Numbered(), shape=shape, requests=24, warmup=4,
                      max_tokens=2, client_processes=3)
    records = result.run.records
    assert [r.request_id for r in records] == list(range(24))
    assert len(pids(records)) == 3
    offsets = arrival_offsets(shape, 28)[4:]
    due = [r.scheduled_ns for r in records]
    assert all(d is not None for d in due)
    # Every process reads the same clock: the due times are the one schedule's, to the ns.
    start = due[0]
    assert start is not None
    for d, offset in zip(due, offsets, strict=True):
        assert d is not None
        assert abs((d - start) / 1e9 - (offset - offsets[0])) < 2e-9
    assert result.run.window_start_ns == start
    assert all(r.send_ns >= (r.scheduled_ns or 0) for r in records)


def test_a_window_by_duration_hands_out_more_prompts_and_none_twice() -> None:
    prompts = Numbered()
    result = run_load(served_by(Echo(0.005)), prompts, users=4, duration_s=1.0, warmup=2,
                      max_tokens=2, client_processes=2)
    texts = [r.input_tokens for r in result.run.records]
    assert len(texts) > 40  # far more than the 2 rounds each process was dealt
    assert len(set(texts)) == len(texts)
    assert len(pids(result.run.records)) == 2


def test_one_process_stopping_stops_them_all(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"

    def stop(done: object) -> str | None:
        # Only the first process to ask says stop; the other must hear it from that one.
        try:
            os.close(os.open(chosen, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return None if chosen.read_text() != str(os.getpid()) else "clearly failed"
        chosen.write_text(str(os.getpid()))
        return "clearly failed"

    result = run_load(served_by(Echo(0.01)), Numbered(), users=4, requests=400,
                      max_tokens=2, client_processes=2, stop=stop)  # type: ignore[arg-type]
    assert result.run.stopped_early == "clearly failed"
    records = result.run.records
    assert len(pids(records)) == 2
    for pid in pids(records):  # 200 each, had either gone on
        assert sum(r.server_timings["pid"] == pid for r in records) < 60


def test_a_failing_process_fails_the_run_with_its_traceback() -> None:
    def boom() -> None:
        raise RuntimeError("the fake client broke")

    began = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)client process .* failed:.*the fake client"):
        run_load(served_by(Echo(0.01, on_send=boom)), Numbered(), users=4, requests=8,
                 warmup=2, max_tokens=2, client_processes=2)
    assert time.monotonic() - began < 20


def test_a_killed_process_fails_the_run_instead_of_hanging_it() -> None:
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    began = time.monotonic()
    with pytest.raises(RuntimeError, match=r"ended without a result \(exit code -9\)"):
        run_load(served_by(Echo(0.01, on_send=die)), Numbered(), users=4, requests=8,
                 max_tokens=2, client_processes=2)
    assert time.monotonic() - began < 20


def test_arrivals_are_dealt_round_robin_but_a_conversation_stays_with_one_process() -> None:
    assert deal_arrivals([None] * 7, 3) == [(0, 3, 6), (1, 4), (2, 5)]
    # "a" starts on worker 0 and keeps it; the others fill whichever worker has fewest.
    assert deal_arrivals(["a", "a", "b", None, "a", "b", None], 2) == [(0, 1, 4, 6),
                                                                       (2, 3, 5)]


def test_a_conversation_s_turns_wait_for_each_other_across_processes() -> None:
    # Round-robin would send the second turn of "a" from another process than its first,
    # where nothing knows the first is still unanswered.
    trace = Trace(Path("t.jsonl"), "jsonl", (TraceRequest(0.0, 40, 2, session="a", turn=0),
                                             TraceRequest(0.03, 40, 2, session="a", turn=1),
                                             TraceRequest(0.06, 40, 2, session="b", turn=0)))
    result = run_load(served_by(Echo(0.2)), TracePrompts(WordTokenizer(), trace),
                      shape=replay_shape(trace), requests=3, max_tokens=2, client_processes=2)
    first, second, other = result.run.records
    assert first.server_timings["pid"] == second.server_timings["pid"]
    assert other.server_timings["pid"] != first.server_timings["pid"]
    assert second.send_ns >= first.end_ns  # the second turn waited for the first's answer
    assert other.send_ns < first.end_ns  # another conversation did not
    assert second.queued_ns >= 0.1 * 1e9  # the wait is counted as queued, not as lateness


def test_processes_are_never_more_than_the_load_can_use() -> None:
    result = run_load(served_by(Echo(0.01)), Numbered(), users=2, requests=8,
                      max_tokens=2, client_processes=8)
    assert result.health is not None and result.health.figures["client_processes"] == 2


def test_an_in_process_engine_is_refused(tmp_path: Path) -> None:
    served = ServedModel("transformers", "m", None, engine="transformers",
                         open_client=served_by(Echo(0.0)).open_client)
    with pytest.raises(ValueError, match="runs in the test process"):
        run_load(served, Numbered(), users=2, requests=2, client_processes=2)
    with pytest.raises(SettingError, match=r"--llmperf-client-processes.*transformers engine"):
        resolve_settings({"backend": "transformers", "client_processes": "2"}, {}, {},
                         tmp_path)


def test_real_streams_from_two_processes_against_the_stub() -> None:
    with running_stub("--first-ms", "30", "--token-ms", "5", "--jitter", "0") as url:
        served = ServedModel("openai", "stub", Endpoint(url, "stub"), engine="stub")
        result = run_load(served, BuiltinPrompts(), users=8, requests=32, warmup=4,
                          max_tokens=8, client_processes=2)
    records = result.run.records
    assert [r.request_id for r in records] == list(range(32))
    assert all(r.ok and r.output_tokens == 8 for r in records)
    assert 30 <= statistics.median(result.metrics.distributions["ttft_ms"]) < 300
    assert result.health is not None and {"loop_lag_ms_p99", "client_cpu_pct",
                                          "other_cpu_pct"} <= set(result.health.figures)


def test_uvloop_drives_a_window_in_one_process_and_in_several() -> None:
    import uvloop

    loops: list[bool] = []

    def note() -> None:
        loops.append(isinstance(asyncio.get_running_loop(), uvloop.Loop))

    result = run_load(served_by(Echo(0.01, on_send=note)), Numbered(), users=2, requests=4,
                      max_tokens=2, event_loop="uvloop")
    assert loops and all(loops) and len(result.run.records) == 4
    result = run_load(served_by(Echo(0.01)), Numbered(), users=4, requests=8,
                      max_tokens=2, event_loop="uvloop", client_processes=2)
    assert [r.request_id for r in result.run.records] == list(range(8))


def test_the_window_runs_with_the_session_frozen_out_of_the_collector() -> None:
    frozen: list[int] = []
    run_load(served_by(Echo(0.0, on_send=lambda: frozen.append(gc.get_freeze_count()))),
             Numbered(), users=1, requests=2, max_tokens=2)
    assert frozen and min(frozen) > 0
    assert gc.get_freeze_count() == 0


def test_uvloop_missing_is_refused_naming_the_option(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvloop" else real(name, *a))
    with pytest.raises(SettingError, match=r"LLMPERF_EVENT_LOOP \(environment\): uvloop is "
                                           "not installed"):
        resolve_settings({}, {"LLMPERF_EVENT_LOOP": "uvloop"}, {}, tmp_path)
    with pytest.raises(SettingError, match="--llmperf-event-loop"):
        resolve_settings({"event_loop": "trio"}, {}, {}, tmp_path)


def test_the_suite_runs_from_client_processes_and_says_so(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import xml.etree.ElementTree as ET

    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text('[defaults]\nslo = ["error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    with running_stub("--first-ms", "20", "--token-ms", "2", script=FAST_STUB) as url:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "perf/test_concurrency.py", "-p",
             "no:cacheprovider", "-k", "test_concurrent_users", "--backend", "openai",
             "--model", "stub", "--base-url", url, "--llmperf-users=8",
             "--llmperf-requests=24", "--llmperf-max-tokens=8",
             "--llmperf-client-processes=2", "--junitxml=junit.xml",
             "--llmperf-report=report.md"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    props = {str(p.get("name")): str(p.get("value"))
             for p in ET.parse(tmp_path / "junit.xml").iter("property")}
    assert props["llmperf.health.client_processes"] == "2"
    assert float(props["llmperf.completed"]) == 24
    assert "client_processes 2" in (tmp_path / "report.md").read_text()


# --- interrupting and killing a window of several processes --------------------------------

# A window of two client processes whose requests are never answered; each worker touches
# sending.PID once it has sent.  argv: the directory, then how to run (see the tests).
STUCK_WINDOW = '''
import asyncio, contextlib, json, os, resource, sys
from pathlib import Path
from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.processes import deal_arrivals
from pytest_llmperf.load.runner import run_load

here, mode = Path(sys.argv[1]), sys.argv[2]
sys.path.insert(0, os.getcwd())  # the repository: tests.unit.test_client_processes


class Stuck:
    async def send(self, request_id, prompt):
        (here / f"sending.{os.getpid()}").touch()
        await asyncio.sleep(300)
        raise AssertionError("never answered")


class Prompts:
    about_caching = False

    def prepare(self, count):
        pass

    def next_prompt(self):
        return Prompt("p")

    def describe(self):
        return {"dataset": "p"}


@contextlib.asynccontextmanager
async def open_client(max_tokens, timeout_s, first_token_timeout_s):
    yield Stuck()


served = ServedModel("openai", "stuck", Endpoint("http://127.0.0.1:9/v1", "stuck"),
                     engine="stuck", open_client=open_client)
if mode == "limits":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    from tests.unit.test_client_processes import Echo, Numbered, served_by
    result = run_load(served_by(Echo(0.0)), Numbered(), users=1, requests=2, max_tokens=2)
    print(json.dumps({"limit": resource.getrlimit(resource.RLIMIT_NOFILE),
                      "figures": result.health.figures}))
else:
    run_load(served, Prompts(), users=2, requests=2, max_tokens=2, client_processes=2)
'''


def _stuck_window(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], list[int]]:
    """The stuck window running in a session of its own, once both workers have sent.  Its
    output goes to a file: a pipe would stay open as long as any worker lives."""
    script = tmp_path / "window.py"
    script.write_text(STUCK_WINDOW)
    with (tmp_path / "output.txt").open("wb") as output:
        window = subprocess.Popen([sys.executable, str(script), str(tmp_path), mode],
                                  cwd=Path(__file__).resolve().parents[2], stdout=output,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=default_signals)
    deadline = time.monotonic() + 60
    while len(sending := list(tmp_path.glob("sending.*"))) < 2:
        if window.poll() is not None or time.monotonic() > deadline:
            window.kill()
            window.wait()
            pytest.fail(f"the window never started: {(tmp_path / 'output.txt').read_text()}")
        time.sleep(0.05)
    return window, [int(path.suffix[1:]) for path in sending]


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """Those of ``pids`` still running after ``seconds``; they are killed then."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def test_ctrl_c_stops_a_window_of_several_processes_at_once(tmp_path: Path) -> None:
    window, workers = _stuck_window(tmp_path, "interrupt")
    try:
        os.killpg(window.pid, signal.SIGINT)  # Ctrl+C: the terminal's whole foreground group
        # Not when the requests end (300 s): the wait for the window's end is given up.
        window.wait(timeout=30)
    except subprocess.TimeoutExpired:
        window.kill()
        window.wait()
        _gone_within(workers, 0)
        pytest.fail("Ctrl+C did not stop the window within 30 s: it waited for its end")
    output = (tmp_path / "output.txt").read_text()
    assert "KeyboardInterrupt" in output, output
    assert _gone_within(workers, 30) == []


def test_client_processes_end_with_a_killed_test_process(tmp_path: Path) -> None:
    window, workers = _stuck_window(tmp_path, "kill")
    window.kill()
    window.wait()
    left = _gone_within(workers, 30)
    assert left == [], f"client processes outlived the killed test process: {left}"


def test_measuring_raises_the_open_files_limit_to_the_hard_limit(tmp_path: Path) -> None:
    import json
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to raise")
    script = tmp_path / "window.py"
    script.write_text(STUCK_WINDOW)
    done = subprocess.run([sys.executable, str(script), str(tmp_path), "limits"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    raised, kept_hard = out["limit"]
    assert kept_hard == hard
    assert raised > 256 and (raised == hard or hard == resource.RLIM_INFINITY), out
    assert out["figures"]["open_files_limit"] == raised

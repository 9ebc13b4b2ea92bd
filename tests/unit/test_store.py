"""The result store: documents round-trip, a bad file is refused naming it, nothing saved is
lost (numbered files, atomic writes), the plugin writes one document per run, and a document
written by the previous release (schema 1) still loads and compares."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.__main__ import main as cli
from pytest_llmperf.results.capacity import CapacityResult
from pytest_llmperf.results.comparison import Comparison
from pytest_llmperf.results.health import Health
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.judge import judge_capacity, judge_window
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.prefix_cache import PrefixCacheResult
from pytest_llmperf.results.prompt_origin import PromptOrigin
from pytest_llmperf.results.record_codec import encode_records, run_from_json, run_to_json
from pytest_llmperf.results.recorded import (
    Provenance,
    RecordedCapacity,
    RecordedPrefixCache,
    RecordedSweep,
    RecordedWindow,
)
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.resources import (
    GpuTimeline,
    GpuUse,
    MeanPeak,
    Resources,
    ServerUse,
    SystemUse,
    Timeline,
)
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.sweep import SweepResult
from pytest_llmperf.results.thresholds import parse_check, parse_gate
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.searches.capacity_probe import probe_outcome
from pytest_llmperf.store.capacity_compare import compare_capacity
from pytest_llmperf.store.compare import REPEATS_NOTE, ROW_METRICS, compare_windows, group_windows
from pytest_llmperf.store.documents import (
    SCHEMA,
    RunDocument,
    StoreError,
    find_saved,
    load_run,
    save_run,
    saved_runs,
    write_atomic,
    write_run,
)

MS = 1_000_000
US = 1_000
SERVED = ServedInfo("llamacpp", "m", "fake 1.0")


def document(**fingerprint: object) -> RunDocument:
    window = WindowResult(SERVED, LoadShape.closed(1), 10, LoadRun((), 0, 0, 1, 0))
    return RunDocument.new([RecordedWindow(Provenance("t.py::test_x[llamacpp-m]"), window)],
                           {"cpu_model": "x", **fingerprint})


def test_records_are_kept_raw_in_microseconds_from_the_window_and_the_send() -> None:
    record = RequestRecord(3, 1_000 * MS + 5 * MS, (1_000 * MS + 105 * MS, 1_000 * MS + 125 * MS),
                           1_000 * MS + 126 * MS, 2, TokenSource.USAGE, 30, TokenSource.USAGE,
                           "length", resent=True)
    run = LoadRun((record,), 1_000 * MS, 1_000 * MS + 126 * MS, 1, 0)
    assert encode_records(run) == [{
        "id": 3, "send_us": 5_000, "chunk_us": [100_000, 120_000], "end_us": 121_000,
        "output_tokens": 2, "output_token_source": "usage", "input_tokens": 30,
        "input_token_source": "usage", "finish_reason": "length", "error": None,
        "resent": True,
    }]


def test_an_open_loop_record_keeps_its_scheduled_time() -> None:
    record = RequestRecord(0, 1_000 * MS + 9 * MS, (1_000 * MS + 50 * MS,), 1_000 * MS + 51 * MS,
                           1, scheduled_ns=1_000 * MS + 2 * MS, queued_ns=4 * MS)
    run = LoadRun((record,), 1_000 * MS, 1_000 * MS + 51 * MS, 1, 0)
    encoded = encode_records(run)
    assert encoded[0]["scheduled_us"] == 2_000
    assert encoded[0]["queued_us"] == 4_000
    stored = json.loads(json.dumps(run_to_json(run)))
    assert stored["records"] == encoded and stored["duration_ns"] == 51 * MS
    decoded = run_from_json(Fields(stored)).records[0]
    assert decoded.send_ns - decoded.scheduled_ns == 7 * MS
    assert decoded.queued_ns == 4 * MS


def test_a_reasoning_answer_and_its_cache_figures_survive_the_round_trip() -> None:
    """Compare recomputes every metric from stored requests, so the answer's split must come
    back exactly (to the microsecond) and a plain request must come back plain."""
    start = 1_000 * MS
    reasoning = RequestRecord(
        0, start + 1 * MS, (start + 40 * MS, start + 60 * MS, start + 90 * MS),
        start + 91 * MS, 30, TokenSource.USAGE, 600, TokenSource.USAGE, "length",
        max_tokens=30, cached_tokens=512, dataset_input_tokens=570, reasoning_chunks=2,
        answer_start_ns=start + 90 * MS, answer_end_ns=start + 90 * MS, reasoning_tokens=20,
        reasoning_token_source=TokenSource.USAGE)
    unanswered = RequestRecord(1, start + 2 * MS, (start + 50 * MS,), start + 51 * MS, 5,
                               reasoning_chunks=1, reasoning_tokens=None)
    plain = RequestRecord(2, start + 3 * MS, (start + 30 * MS,), start + 31 * MS, 1)
    run = LoadRun((reasoning, unanswered, plain), start, start + 91 * MS, 3, 0)
    encoded = encode_records(run)
    assert encoded[0]["answer_start_us"] == 89_000 and encoded[0]["cached_tokens"] == 512
    assert "reasoning_chunks" not in encoded[2] and "cached_tokens" not in encoded[2]
    back = run_from_json(Fields(json.loads(json.dumps(run_to_json(run))))).records
    shift = back[0].send_ns - reasoning.send_ns  # stored times are from the window's start
    assert back[0] == dataclasses.replace(
        reasoning, send_ns=reasoning.send_ns + shift,
        chunk_ns=tuple(t + shift for t in reasoning.chunk_ns), end_ns=reasoning.end_ns + shift,
        answer_start_ns=start + 90 * MS + shift, answer_end_ns=start + 90 * MS + shift)
    assert back[1].has_reasoning and back[1].reasoning_tokens is None
    assert back[1].answer_start_ns is None
    assert back[2].reasoning_tokens == 0 and not back[2].has_reasoning


def test_round_trip(tmp_path: Path) -> None:
    saved = document(git_commit="abc")
    path = write_run(saved, tmp_path / "run.json")
    assert load_run(path) == saved
    assert load_run(path).to_json() == json.loads(json.dumps(saved.to_json()))
    assert load_run(path).schema == SCHEMA
    assert json.loads(path.read_text())["schema"] == SCHEMA


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"schema": 1, "created": "x", "fingerp', "not valid JSON (truncated or corrupt?)"),
        ("[1, 2]", "is not a pytest-llmperf run"),
        ('{"schema": 1}', "is not a pytest-llmperf run"),
        ('{"schema": "1", "created": "", "fingerprint": {}, "windows": []}',
         "schema '1' is not a version number"),
        (json.dumps({"schema": SCHEMA + 1, "created": "", "fingerprint": {}, "windows": []}),
         f"has schema {SCHEMA + 1}, newer than this pytest-llmperf reads ({SCHEMA})"),
        ('{"schema": 1, "created": "", "fingerprint": {}, "windows": {}}',
         "windows must be a list"),
    ],
)
def test_a_bad_file_is_refused_naming_it(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "0001_before.json"
    path.write_text(text)
    with pytest.raises(StoreError) as info:
        load_run(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_a_missing_or_binary_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot read stored run"):
        load_run(tmp_path / "nope.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(StoreError, match="not UTF-8"):
        load_run(tmp_path / "bin.json")


def test_a_crash_mid_write_leaves_the_old_file_whole(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_run(document(git_commit="old"), tmp_path / "run.json")

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space left"):
        write_run(document(git_commit="new"), path)
    assert load_run(path).fingerprint["git_commit"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no half-written leftovers


def test_write_atomic_makes_the_directory(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a" / "b.txt", "x")
    assert (tmp_path / "a" / "b.txt").read_text() == "x"


def test_saving_never_replaces_an_earlier_run(tmp_path: Path) -> None:
    storage = tmp_path / ".llmperf"
    first = save_run(document(git_commit="1"), storage, "before")
    second = save_run(document(git_commit="2"), storage, "before")
    third = save_run(document(git_commit="3"), storage, "after")
    assert [p.name for p in (first, second, third)] == [
        "0001_before.json", "0002_before.json", "0003_after.json"]
    assert [run.name for run in saved_runs(storage)] == ["before", "before", "after"]
    assert [run.path for run in find_saved(storage, "before")] == [second]  # the newest
    assert [run.path for run in find_saved(storage, "latest", 2)] == [second, third]
    with pytest.raises(StoreError, match=r"no run saved as 'nope' .* \(saved: after, before\)"):
        find_saved(storage, "nope")


def test_the_list_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = tmp_path / "store"
    assert cli(["list", "--storage", str(storage)]) == 0
    assert "no saved runs" in capsys.readouterr().out
    save_run(document(git_commit="abc123"), storage, "before")
    (storage / "0002_broken.json").write_text("{")
    assert cli(["list", "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert "0001_before.json" in out and "abc123" in out
    assert "0002_broken.json" in out and "unreadable" in out


KNOWN_RESULT = '''
import pytest
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.window import WindowResult

MS = 1_000_000

@pytest.fixture
def llmperf_load(llmperf_recorder, llmperf_target):
    served = ServedModel(llmperf_target.backend, llmperf_target.model,
                         Endpoint("http://127.0.0.1:9/v1", "m"), engine="fake 1.0")

    def load(**_):
        records = tuple(RequestRecord(i, i * 100 * MS, (i * 100 * MS + 20 * MS,
                        i * 100 * MS + 30 * MS), i * 100 * MS + 30 * MS, 2, TokenSource.USAGE)
                        for i in range(3))
        run = LoadRun(records, 0, records[-1].end_ns, 1, 0)
        result = WindowResult(served.info, LoadShape.closed(1), 2, run)
        llmperf_recorder.record_window(result, None)
        return result

    return load
'''


def test_every_run_writes_its_document_and_save_keeps_a_numbered_copy(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(KNOWN_RESULT)
    pytester.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n')
    pytester.makepyfile(test_x="""
        def test_x(llmperf_target, llmperf_load, llmperf_slo):
            llmperf_slo.check(llmperf_load())
    """)
    for _ in range(2):
        result = pytester.runpytest("--llmperf-save", "before", "--llmperf-json", "out.json")
        result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["result document: *results.json, *out.json",
                                 "saved run: *0002_before.json"])
    stored = load_run(pytester.path / "out.json")
    assert stored == load_run(pytester.path / "llmperf-output" / "results.json")
    fingerprint = stored.fingerprint
    assert len(fingerprint["thresholds_sha256"]) == 64
    assert fingerprint["cpu_cores"] >= 1 and fingerprint["cpu_model"]
    assert fingerprint["gpu_count"] == len(fingerprint["gpu_models"])
    assert {"gpu_driver", "cuda", "python", "pytest_llmperf", "git_commit"} <= set(fingerprint)
    [window] = stored.windows
    assert window.provenance.nodeid == "test_x.py::test_x[llamacpp-smollm2-135m]"
    assert [tuple(t - r.send_ns for t in r.chunk_ns) for r in window.window.run.records] == [
        (20 * MS, 30 * MS)] * 3
    [raw] = json.loads((pytester.path / "out.json").read_text())["windows"]
    assert [r["chunk_us"] for r in raw["window"]["records"]] == [[20_000, 30_000]] * 3
    assert window.window.shape.users == 1
    assert (window.window.served.engine, window.window.prompts) == ("fake 1.0", None)
    assert window.verdicts[0].state == "pass"
    assert [run.name for run in saved_runs(pytester.path / ".llmperf")] == ["before", "before"]


def test_a_bad_save_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llmperf-save", "../escape")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llmperf-save (command line): invalid value '../escape'" in result.stderr.str()


# --- a schema 2 document round-trips ---------------------------------------------------------


def answer(i: int, send_us: int, *, ttft_us: int = 50_000, step_us: int = 10_000,
           tokens: int = 6, **fields: Any) -> RequestRecord:
    """A completed request; times in whole microseconds, as the store keeps them."""
    send = send_us * US
    chunks = tuple(send + (ttft_us + k * step_us) * US for k in range(tokens))
    return RequestRecord(i, send, chunks, chunks[-1] + 2 * US, tokens, TokenSource.USAGE, 40,
                         TokenSource.USAGE, "length", **fields)


def closed_window(users: int, *, step_us: int = 10_000, prompts: PromptOrigin | None = None,
                  cached: int | None = None, resources: Resources | None = None,
                  server: bool = False) -> WindowResult:
    records = tuple(answer(i, (i // users) * 120_000 + i % users * 7, step_us=step_us + i * 11,
                           cached_tokens=cached) for i in range(4 * users))
    run = LoadRun(records, 0, max(r.end_ns for r in records), users, users)
    health = Health({"loop_lag_ms_p99": 1.25, "client_cpu_pct": 12.5, "window_s": 0.5},
                    {"loop_lag_ms_p99": 25.0, "client_cpu_pct": 90.0})
    return WindowResult(SERVED, LoadShape.closed(users), 6, run,
                        {"server_decode_ms_per_token": 9.8} if server else None,
                        () if server else ("no queue length",), resources,
                        prompts or PromptOrigin("built-in", 3, "5eed"), health)


def resources() -> Resources:
    gpu = GpuUse(0, "NVIDIA H100 80GB HBM3", "GPU-0000", 81559.0, MeanPeak(71.5, 98.0),
                 MeanPeak(60000.0, 61000.0), MeanPeak(350.0, 420.0), MeanPeak(55.0, 61.0),
                 MeanPeak(1980.0, 1980.0), MeanPeak(59000.0, 59000.0), 700.0,
                 "NVML energy counter")
    idle = Resources(ServerUse("launched server", 4242, MeanPeak(1.0, 2.0)),
                     SystemUse(16384.0, MeanPeak(3.0, 4.0)), interval_s=0.2, samples=3)
    return Resources(
        ServerUse("launched server", 4242, MeanPeak(95.0, 130.0), MeanPeak(2048.0, 2100.0), 3),
        SystemUse(16384.0, MeanPeak(30.0, 55.0), MeanPeak(6000.0, 6200.0)), (gpu,), None,
        {"gpu_util_mean": 71.5, "energy_j": 700.0, "energy_j_per_token": 7.29,
         "server_cpu_mean_pct": 95.0}, 0.5, 3, 1.0, None,
        Timeline((0.0, 0.5, 1.0), (GpuTimeline((70.0, 72.0, None), (6e4, 6.1e4, 6e4),
                                               (350.0, 420.0, 280.0)),),
                 (None, 90.0, 100.0), (2048.0, 2050.0, 2100.0)), idle)


def open_window() -> WindowResult:
    records = tuple(answer(i, 250_000 * i + 400 + 3 * i, scheduled_ns=250_000 * i * US,
                           queued_ns=300 * US if i == 2 else 0, max_tokens=6)
                    for i in range(6))
    run = LoadRun(records, 0, max(r.end_ns for r in records), 2, 1)
    health = Health({"loop_lag_ms_p99": 31.0, "send_late_ms_p99": 0.41},
                    {"loop_lag_ms_p99": 25.0, "send_late_ms_p99": 10.0},
                    client_bound=("loop_lag_ms_p99 31 > 25",))
    return WindowResult(SERVED, LoadShape.open(4.0, max_concurrency=2, seed=4), 6, run,
                        prompts=PromptOrigin("random", 0, "ab12",
                                             {"input_tokens": 40, "output_tokens": 6}),
                        health=health)


def reasoning_window() -> WindowResult:
    send = 1_000 * US
    chunks = tuple(send + (40_000 + 10_000 * k) * US for k in range(8))
    thought = RequestRecord(0, send, chunks, chunks[-1] + 9 * US, 8, TokenSource.USAGE, 30,
                            TokenSource.USAGE, "length", reasoning_chunks=4, reasoning_tokens=4,
                            reasoning_token_source=TokenSource.USAGE,
                            answer_start_ns=chunks[4], answer_end_ns=chunks[-1])
    failed = RequestRecord(1, chunks[-1] + 20 * US, end_ns=chunks[-1] + 25 * US,
                           error="HTTP 503: busy", error_kind="http_5xx")
    run = LoadRun((thought, failed), 0, failed.end_ns, 1, 0, "the window's deadline")
    return WindowResult(SERVED, LoadShape.closed(1), 8, run)


def rich_document() -> RunDocument:
    """Every kind of record a run can hold: windows with verdicts (pass, fail, inconclusive,
    skip), a comparison and a missing one, resources with a timeline and idle readings,
    health with a mark, prompts, an open loop's scheduled times, a reasoning answer and a
    failed request; a sweep, a capacity search with its comparison, and a prefix cache."""
    latency = closed_window(2, resources=resources(), server=True)
    checks = [parse_check(text, "thresholds.toml:3") for text in
              ("tpot_ms.p95 < 100", "ttft_ms.mean < 40", "gpu_util_mean >= 10")]
    compared = compare_windows([closed_window(2, step_us=10_100)], [latency],
                               [parse_gate("tpot_ms.p95:10%", "--llmperf-compare-fail")],
                               label="before")
    rate = open_window()
    node = "tests/perf/test_{}.py::test_{}[llamacpp-m]".format
    windows = [
        RecordedWindow(Provenance(node("latency", "latency"), 1, None, "failed"), latency,
                       judge_window(latency, checks), compared, "llmperf-output/latency.png"),
        RecordedWindow(Provenance(node("rate", "rate"), 1, 2, "passed"), rate,
                       judge_window(rate, checks[2:]),
                       Comparison("before", missing="this test and call are not in the "
                                                    "baseline")),
        RecordedWindow(Provenance(node("reasoning", "reasoning"), 2), reasoning_window()),
    ]
    sweep = SweepResult("users", (closed_window(1), closed_window(2)))
    capacity_checks = [parse_check("tpot_ms.p95 < 10.2", "thresholds.toml:5")]
    probes = []
    for load in (1, 2, 4, 3, 3, 4):
        window = closed_window(load, step_us=9_950 + 20 * load)
        probes.append(probe_outcome(float(load), window, judge_window(window, capacity_checks),
                                    capacity_checks, window.run.duration_s))
    search = CapacityResult("users", 3.0, 4.0, tuple(probes), "boundary found", 12.34, 600.0)
    shared = PromptOrigin("shared-prefix", 5, "ca11", {"documents": 2, "document_tokens": 512},
                          about_caching=True, made_in_window=1)
    cache = PrefixCacheResult(closed_window(1, prompts=shared, cached=0),
                              closed_window(1, prompts=shared, cached=32), 512)
    searches = [
        RecordedSweep(Provenance(node("sweep", "sweep")), SERVED, sweep.dimension, sweep.rows,
                      (1, 2), {"tpot_ms.p95": 100.0}, "llmperf-output/sweep.png",
                      "8 users: beyond --llmperf-max-num-seqs"),
        RecordedCapacity(Provenance(node("capacity", "capacity"), outcome="passed"), SERVED,
                         LoadShape.closed(1), search, {"tpot_ms.p95": 10.2}, None,
                         judge_capacity(search, [parse_check("capacity_max_concurrency >= 2",
                                                             "thresholds.toml:7")]),
                         "before", compare_capacity([search], search)),
        RecordedPrefixCache(Provenance(node("prefix_cache", "prefix_cache")), SERVED,
                            cache.gain),
    ]
    return RunDocument("2026-12-01T10:00:00+00:00", {"cpu_model": "x", "gpu_models": ["H100"]},
                       tuple(windows), tuple(searches), extra={"ci_job": "job-7"})


def test_a_document_with_every_kind_of_record_round_trips(tmp_path: Path) -> None:
    doc = rich_document()
    # What it holds: each kind of record at least once.
    latency, rate, reasoning = (recorded.window for recorded in doc.windows)
    assert [v.state for v in doc.windows[0].verdicts] == ["inconclusive", "fail", "pass"]
    assert [v.state for v in doc.windows[1].verdicts] == ["skip"]
    assert doc.windows[0].comparison is not None and doc.windows[0].comparison.rows
    assert latency.resources is not None and latency.resources.timeline is not None
    assert rate.validity_marks == {"client-bound": ("loop_lag_ms_p99 31 > 25",)}
    assert all(r.scheduled_ns is not None for r in rate.run.records)
    assert reasoning.reasoning_requests == 1 and set(reasoning.errors) == {"http_5xx"}
    assert [type(s).__name__ for s in doc.searches] == [
        "RecordedSweep", "RecordedCapacity", "RecordedPrefixCache"]
    assert doc.searches[1].comparison is not None  # type: ignore[union-attr]

    assert RunDocument.from_json(Fields(doc.to_json())).to_json() == doc.to_json()
    # The same through a file: the text a run writes and reads back.
    again = load_run(write_run(doc, tmp_path / "run.json"))
    assert again.to_json() == json.loads(json.dumps(doc.to_json()))
    # The windows whole (every request, as it was) and their verdicts; a comparison's figures
    # are kept to 4 decimals, as its to_json writes them.
    assert [w.window for w in again.windows] == [w.window for w in doc.windows]
    assert [w.verdicts for w in again.windows] == [w.verdicts for w in doc.windows]
    assert (again.schema, again.extra) == (SCHEMA, {"ci_job": "job-7"})


def test_a_stored_document_reads_back_as_it_was_written() -> None:
    """Requests are kept to the microsecond: a window timed to the nanosecond is rounded once,
    when first written, and reads back the same from then on."""
    start = 1_000 * MS + 123
    records = tuple(RequestRecord(i, start + i * 7_654_321, (start + i * 7_654_321 + 40_123_457,
                                                             start + i * 7_654_321 + 50_987_651),
                                  start + i * 7_654_321 + 51_000_009, 2, TokenSource.USAGE)
                    for i in range(5))
    run = LoadRun(records, start, records[-1].end_ns + 333, 1, 0)
    window = WindowResult(SERVED, LoadShape.closed(1), 2, run)
    stored = RunDocument.from_json(Fields(RunDocument.new(
        [RecordedWindow(Provenance("t.py::test_x"), window)], {}).to_json()))
    assert [r.send_ns % US for r in stored.windows[0].window.run.records] == [0] * 5
    assert RunDocument.from_json(Fields(stored.to_json())).to_json() == stored.to_json()


# --- a document written by the previous release (schema 1) ------------------------------------
#
# tests/data/results_schema1.json was written by the previous release's own code (the commit
# before the typed records, pytest_llmperf 72cac82, run from a checkout of it with its own
# virtualenv), by a throw-away script that builds the document as that release's plugin did
# (recorder.py, reporter.py, search_fixtures.py, dataset_fixtures.py) from hand-made
# RequestRecords, with no server:
# - windows: report.entry.result_entry(PerfResult(...), timeline_png) plus call/repeat, then
#   verdict_entry of results.slo.evaluate's verdicts, comparison_entry of
#   results.compare.compare_windows (or the "missing" comparison the recorder wrote), then
#   nodeid/outcome; PerfResult.telemetry came from observe.telemetry.Telemetry sampling the
#   scripted NVML and psutil fakes of its tests/unit/test_telemetry.py, health from
#   observe.health.judge_health, prompts from BuiltinPrompts / SharedPrefixPrompts.describe().
#   test_latency: 2 users, telemetry, server metrics, verdicts inconclusive/fail/pass/pass;
#   test_concurrency: two repeats of one call (ramp 1 s), a skipped GPU SLO, compared with
#   themselves under the gate tpot_ms.p95:10%; test_rate: open loop 4 req/s, max 3 in
#   flight, client-bound (loop lag 31 ms), not in the baseline; test_reasoning: answers that
#   reasoned first; test_sweep: the sweep's two points; test_prefix_cache: cold and warm.
# - searches: sweep_entry (users 1 and 2, calls [1, 2]), capacity_entry of a CapacityResult
#   whose ProbeOutcomes carry their PerfResults (capacity 3 users, first failing 4, with a
#   capacity verdict and the comparison dict results.capacity_compare gave), and
#   prefix_cache_entry(PrefixCacheResult(cold, warm, 512)); each plus nodeid/outcome.
# - results.store.run_document(windows, fingerprint, searches) with "created" fixed, then
#   results.store.write_run.

SCHEMA1 = Path(__file__).parents[1] / "data" / "results_schema1.json"
TARGET = "[llamacpp-smollm2-135m]"


def _schema1() -> tuple[RunDocument, dict[str, Any]]:
    return load_run(SCHEMA1), json.loads(SCHEMA1.read_text())


def test_a_schema1_document_loads_with_its_windows_verdicts_and_searches() -> None:
    doc, raw = _schema1()
    assert (doc.schema, doc.created) == (1, "2026-11-30T12:00:00+00:00")
    assert doc.fingerprint == raw["fingerprint"]
    assert doc.fingerprint["git_commit"] == "72cac82" and doc.fingerprint["gpu_count"] == 1
    assert [(w.provenance.test, w.provenance.call, w.provenance.repeat, w.provenance.outcome)
            for w in doc.windows] == [
        ("test_latency" + TARGET, 1, None, "failed"),
        ("test_concurrency" + TARGET, 1, 1, "passed"),
        ("test_concurrency" + TARGET, 1, 2, "passed"),
        ("test_rate" + TARGET, 1, None, "passed"),
        ("test_reasoning" + TARGET, 1, None, "passed"),
        ("test_sweep" + TARGET, 1, None, "passed"),
        ("test_sweep" + TARGET, 2, None, "passed"),
        ("test_prefix_cache" + TARGET, 1, None, "passed"),
        ("test_prefix_cache" + TARGET, 2, None, "passed"),
    ]
    assert [w.provenance.nodeid for w in doc.windows] == [w["nodeid"] for w in raw["windows"]]

    latency = doc.windows[0]
    assert latency.window.served == ServedInfo("llamacpp", "smollm2-135m",
                                               "xllamacpp 2026.10.11549",
                                               "/models/smollm2.gguf", "ab" * 32)
    assert (latency.window.shape, latency.window.max_tokens) == (LoadShape.closed(2), 6)
    assert (latency.window.run.concurrency, latency.window.run.warmup_requests) == (2, 2)
    assert latency.timeline_png == "llmperf-output/test_latency.1-timeline.png"
    resources = latency.window.resources
    assert resources is not None and resources.server.pid == 4242
    assert [gpu.name for gpu in resources.gpus] == ["Fake GPU 0"]
    assert resources.metrics == raw["windows"][0]["resources"]["metrics"]
    assert resources.metrics["energy_j_per_token"] > 0
    assert latency.window.health is not None
    assert latency.window.health.figures["loop_lag_ms_p99"] == 1.25
    assert doc.windows[1].window.shape == LoadShape.closed(2, ramp_s=1.0)
    assert doc.windows[3].window.shape == LoadShape.open(4.0, max_concurrency=3, seed=4)
    assert all(r.scheduled_ns is not None for r in doc.windows[3].window.run.records)
    assert doc.windows[4].window.reasoning_requests == 4

    # What the old entries said of each window, the typed window says again.
    for recorded, entry in zip(doc.windows, raw["windows"], strict=True):
        window = recorded.window
        assert window.requests == entry["requests"] == len(entry["records"])
        assert window.users == entry["users"]
        assert window.overload == entry["overload"]
        assert list(window.metrics.output_token_sources) == entry["token_sources"]
        assert (window.approximate_counts, window.resent, window.short_answers,
                window.reasoning_requests) == (entry["approximate_counts"], entry["resent"],
                                               entry["short_answers"],
                                               entry["reasoning_requests"])
        assert window.client_tokens == (entry["client_tokens"]["input"],
                                        entry["client_tokens"]["output"])
        assert {kind: dataclasses.asdict(tally) for kind, tally in window.errors.items()} == \
            entry["errors"]
        cache = window.prompt_cache
        assert (None if cache is None else dataclasses.asdict(cache)) == entry["prompt_cache"]
        overhead = window.template_overhead
        assert (None if overhead is None else list(overhead)) == entry["template_overhead"]
        assert {mark: list(crossed) for mark, crossed in window.validity_marks.items()} == \
            entry["validity"]
        assert window.server_metrics == entry["server_metrics"]
        assert list(window.server_notes) == entry["server_notes"]
        assert window.prompts is not None
        assert window.prompts.to_json() == {"made_in_window": 0, **entry["prompts"]}
        # Verdicts: the same checks, states and words.
        assert [(v.check.text, v.check.origin, v.state, v.passed, v.unit)
                for v in recorded.verdicts] == [
            (v["check"], v["origin"], v["state"], v["passed"], v["unit"])
            for v in entry["verdicts"]]
        for verdict, old in zip(recorded.verdicts, entry["verdicts"], strict=True):
            assert verdict.measured == old["measured"]
            assert verdict.requirement == old["requirement"]
            if old["note"] is not None:
                assert verdict.describe() == old["note"]
    assert [v.state for v in latency.verdicts] == ["inconclusive", "fail", "pass", "pass"]
    assert [v.state for v in doc.windows[1].verdicts] == ["skip", "pass"]
    assert doc.windows[1].verdicts[0].unmeasured_reason == "no NVIDIA GPU: telemetry off"
    assert doc.windows[3].window.validity_marks == {
        "client-bound": tuple(raw["windows"][3]["health"]["client_bound"])}
    assert doc.windows[3].window.validity_marks["client-bound"][0].startswith("loop_lag_ms_p99")

    # Comparisons: the rows as written, each now with its direction.
    compared = doc.windows[2].comparison
    assert compared is not None and compared.baseline == "before" and not compared.missing
    old = raw["windows"][2]["comparison"]
    assert [(r.metric, r.verdict, r.baseline, r.current, r.change, r.low, r.high, r.failed)
            for r in compared.rows] == [
        (r["metric"], r["verdict"], r["baseline"], r["current"], r["change"], r["low"],
         r["high"], r["failed"]) for r in old["rows"]]
    rows = {row.metric: row for row in compared.rows}
    assert rows["decode_tokens_per_s.mean"].higher_is_better
    assert not rows["tpot_ms.p95"].higher_is_better
    gate = rows["tpot_ms.p95"].gate
    assert gate is not None and (gate.text, gate.origin) == ("tpot_ms.p95:10%",
                                                             "--llmperf-compare-fail")
    assert (compared.baseline_windows, compared.current_windows) == (2, 2)
    assert compared.baseline_engine == compared.current_engine == (
        "xllamacpp 2026.10.11549, model sha256 " + "ab" * 6)
    missing = doc.windows[3].comparison
    assert missing is not None and missing.missing == "this test and call are not in the baseline"
    assert [w.comparison for w in doc.windows if w is not doc.windows[2]
            and w is not doc.windows[3]] == [None] * 7

    # Searches: a sweep, a capacity search and a prefix cache, as their entries said.
    sweep, capacity, cache = doc.searches
    assert isinstance(sweep, RecordedSweep)
    assert (sweep.provenance.test, sweep.dimension, sweep.calls) == ("test_sweep" + TARGET,
                                                                     "users", (1, 2))
    assert [row.load for row in sweep.rows] == [1.0, 2.0]
    assert sweep.slo_lines == {"tpot_ms.p95": 100.0}
    assert sweep.chart_png == "llmperf-output/sweep.png"
    for row, recorded in zip(sweep.rows, doc.windows[5:7], strict=True):
        point = LoadPoint.of(recorded.window)
        assert row.label == point.label and row.requests == point.requests
        assert row.tpot_ms_p95 == pytest.approx(point.tpot_ms_p95, abs=2e-3)
        assert row.output_token_throughput == pytest.approx(point.output_token_throughput,
                                                            rel=1e-3)
    assert isinstance(capacity, RecordedCapacity)
    entry = raw["searches"][1]
    search = capacity.search
    assert (search.dimension, search.capacity, search.first_failing) == ("users", 3.0, 4.0)
    assert [p.load for p in search.probes] == [row["load"] for row in entry["rows"]]
    assert [p.passed for p in search.probes] == [True, True, False, True, True, False]
    assert (search.count(3.0), search.count(4.0)) == ((2, 2), (0, 2))
    assert (search.summary, search.boundary, search.metric, search.unit) == (
        entry["summary"], entry["boundary"], entry["metric"], entry["unit"])
    assert list(search.broke_first) == entry["broke_first"]
    assert search.goodput == pytest.approx(entry["goodput"], abs=1e-4)
    assert (search.stop_reason, search.elapsed_s, search.budget_s) == (
        "boundary found", 41.5, 600.0)
    assert [v.state for v in capacity.verdicts] == ["pass"]
    assert (capacity.baseline, capacity.not_compared) == ("before", None)
    assert (capacity.slo_lines, capacity.chart_png) == ({"tpot_ms.p95": 12.0},
                                                        "llmperf-output/capacity.png")
    assert isinstance(cache, RecordedPrefixCache)
    entry = raw["searches"][2]
    assert cache.gain.document_tokens == 512
    assert cache.gain.ttft_gain == pytest.approx(entry["ttft_gain"], rel=1e-3)
    assert cache.gain.warm_cached_share == pytest.approx(entry["warm_cached_share"])
    assert cache.gain.summary == entry["summary"]


def _close(recomputed: float | None, stored: float | None) -> bool:
    if stored is None or recomputed is None:
        return recomputed is stored
    return recomputed == pytest.approx(stored, rel=1e-3, abs=2e-3)


def test_the_metrics_of_a_schema1_window_are_recomputed_from_its_records() -> None:
    """The stored requests give back the distributions and scalars the previous release wrote
    (to the microsecond the requests are kept in, and the 4 decimals the figures were)."""
    doc, raw = _schema1()
    for recorded, entry in zip(doc.windows, raw["windows"], strict=True):
        metrics = recorded.window.metrics
        summary = metrics.summary()
        assert set(summary) == set(entry["distributions"])
        for name, stats in entry["distributions"].items():
            assert set(summary[name]) == set(stats), name
            for stat, value in stats.items():
                assert _close(summary[name][stat], value), (recorded.provenance.test, name, stat)
        assert entry["scalars"]
        for name, value in entry["scalars"].items():
            assert _close(metrics.scalars.get(name), value), (recorded.provenance.test, name)
        # The window's length is read from the scalars it was written in (to 0.1 ms).
        assert recorded.window.run.duration_s == pytest.approx(entry["scalars"]["duration_s"])


def test_schema1_windows_compared_with_themselves_show_no_change() -> None:
    doc, _ = _schema1()
    groups = group_windows(doc.windows)
    # By test and call: the repeats together, the sweep's and the prefix cache's calls apart.
    assert [(nodeid.split("::")[-1], call, len(windows))
            for (nodeid, call), windows in groups.items()] == [
        ("test_latency" + TARGET, 1, 1), ("test_concurrency" + TARGET, 1, 2),
        ("test_rate" + TARGET, 1, 1), ("test_reasoning" + TARGET, 1, 1),
        ("test_sweep" + TARGET, 1, 1), ("test_sweep" + TARGET, 2, 1),
        ("test_prefix_cache" + TARGET, 1, 1), ("test_prefix_cache" + TARGET, 2, 1)]
    for (nodeid, call), windows in groups.items():
        comparison = compare_windows(windows, windows, [parse_gate("tpot_ms.p95:10%", "cli")],
                                     label="results_schema1.json")
        assert comparison.baseline == "results_schema1.json"
        assert [row.metric for row in comparison.rows] == list(ROW_METRICS), nodeid
        assert not comparison.failed and comparison.cross_check is None
        for row in comparison.rows:
            assert row.baseline == row.current, (nodeid, row.metric)
            if row.low is None:  # a whole-window figure, one window a side: no interval
                assert len(windows) == 1 and row.note == REPEATS_NOTE, (nodeid, row.metric)
                assert row.verdict == "inconclusive"
            else:
                assert row.verdict == "no significant change", (nodeid, call, row.metric)
                assert row.low <= 0 <= row.high
        assert sum(row.low is not None for row in comparison.rows) >= 20


def test_a_schema1_document_is_saved_again_as_schema2(tmp_path: Path) -> None:
    doc, _ = _schema1()
    again = load_run(write_run(doc, tmp_path / "0001_before.json"))
    assert again.schema == SCHEMA
    assert again.to_json() == json.loads(json.dumps(doc.to_json()))
    assert [w.window for w in again.windows] == [w.window for w in doc.windows]
    assert [w.verdicts for w in again.windows] == [w.verdicts for w in doc.windows]

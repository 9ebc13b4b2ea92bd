"""The result store: documents round-trip, a bad file is refused naming it, nothing saved is
lost (numbered files, atomic writes), and the plugin writes one document per run."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from pytest_llmperf.__main__ import main as cli
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.store.documents import (
    SCHEMA,
    StoreError,
    decode_window,
    encode_records,
    find_saved,
    load_run,
    run_document,
    save_run,
    saved_runs,
    write_atomic,
    write_run,
)

MS = 1_000_000


def document(**fingerprint: object) -> dict[str, object]:
    return run_document([{"nodeid": "t.py::test_x[llamacpp-m]", "records": []}],
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
    window = {"records": encoded, "scalars": {"duration_s": 0.051},
              "load": {"concurrency": 1, "warmup": 0}}
    decoded = decode_window(window).records[0]
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
    window = {"records": encoded, "scalars": {"duration_s": 0.091},
              "load": {"concurrency": 3, "warmup": 0}}
    back = decode_window(window).records
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
    assert load_run(path) == json.loads(json.dumps(saved))
    assert load_run(path)["schema"] == SCHEMA


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
    assert load_run(path)["fingerprint"]["git_commit"] == "old"
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
from pytest_llmperf.load.runner import PerfResult
from pytest_llmperf.load.shapes import LoadShape
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource

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
        result = PerfResult(served, run, summarize(run), LoadShape.closed(1), 2)
        llmperf_recorder.add(result)
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
    fingerprint = stored["fingerprint"]
    assert len(fingerprint["thresholds_sha256"]) == 64
    assert fingerprint["cpu_cores"] >= 1 and fingerprint["cpu_model"]
    assert fingerprint["gpu_count"] == len(fingerprint["gpu_models"])
    assert {"gpu_driver", "cuda", "python", "pytest_llmperf", "git_commit"} <= set(fingerprint)
    [window] = stored["windows"]
    assert window["nodeid"] == "test_x.py::test_x[llamacpp-smollm2-135m]"
    assert [r["chunk_us"] for r in window["records"]] == [[20_000, 30_000]] * 3
    assert window["load"]["users"] == 1
    assert (window["engine"], window["prompts"]) == ("fake 1.0", {})
    assert window["verdicts"][0]["state"] == "pass"
    assert [run.name for run in saved_runs(pytester.path / ".llmperf")] == ["before", "before"]


def test_a_bad_save_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llmperf-save", "../escape")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llmperf-save (command line): invalid value '../escape'" in result.stderr.str()

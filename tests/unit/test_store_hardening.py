"""Nothing saved is lost: saves never overwrite (two sessions at once, past run 9999), the store
is written before the report, output paths are checked before any server starts, the JSON is
strict, files get the umask's mode and their directory is synced."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.jsonfields import json_number
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.recorded import Provenance, RecordedCapacity, RecordedWindow
from pytest_llmperf.results.records import LoadRun
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.store import documents
from pytest_llmperf.store.documents import (
    RunDocument,
    find_saved,
    load_run,
    save_run,
    saved_runs,
    write_atomic,
    write_run,
)

SERVED = ServedInfo("llamacpp", "m", "fake 1.0")


def document(commit: str = "abc") -> RunDocument:
    window = WindowResult(SERVED, LoadShape.closed(1), 10, LoadRun((), 0, 0, 1, 0))
    return RunDocument.new([RecordedWindow(Provenance("t.py::test_x[llamacpp-m]"), window)],
                           {"cpu_model": "x", "git_commit": commit})


# --- saves never overwrite -----------------------------------------------------------------


def test_a_save_never_replaces_a_run_another_session_saved_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sessions list the directory, both see run 1 as the newest, both save: the second
    must take the next number, not replace the first's file."""
    storage = tmp_path / ".llmperf"
    first = save_run(document("first"), storage, "before")
    # The other session listed the directory before the first save landed.
    monkeypatch.setattr(documents, "saved_runs", lambda _storage: [])
    second = save_run(document("second"), storage, "before")
    monkeypatch.undo()
    assert first != second
    assert load_run(first).fingerprint["git_commit"] == "first"
    assert load_run(second).fingerprint["git_commit"] == "second"
    assert [run.number for run in saved_runs(storage)] == [1, 2]


_SAVER = """
import sys
from pathlib import Path
from pytest_llmperf.store.documents import load_run, save_run
template = load_run(Path(sys.argv[1]))
for _ in range(int(sys.argv[3])):
    save_run(template, Path(sys.argv[2]), sys.argv[4])
"""


def test_two_processes_saving_at_once_keep_every_run(tmp_path: Path) -> None:
    template = write_run(document(), tmp_path / "template.json")
    storage = tmp_path / "store"
    each = 25
    savers = [subprocess.Popen([sys.executable, "-c", _SAVER, str(template), str(storage),
                                str(each), "before"]) for _ in range(2)]
    assert [saver.wait(timeout=120) for saver in savers] == [0, 0]
    runs = saved_runs(storage)
    assert len(runs) == 2 * each  # no run replaced another
    assert sorted(run.number for run in runs) == list(range(1, 2 * each + 1))  # one each
    assert all(load_run(run.path).windows for run in runs)  # and every one whole


def test_numbers_go_on_past_9999_in_order(tmp_path: Path) -> None:
    storage = tmp_path / "store"
    last = write_run(document("9999"), storage / "9999_before.json")
    after = [save_run(document(str(n)), storage, "before") for n in (10000, 10001)]
    assert [p.name for p in after] == ["10000_before.json", "10001_before.json"]
    assert [run.number for run in saved_runs(storage)] == [9999, 10000, 10001]
    assert [run.path for run in find_saved(storage, "before", 3)] == [last, *after]
    assert load_run(after[0]).fingerprint["git_commit"] == "10000"  # not overwritten


# --- strict JSON -----------------------------------------------------------------------------


def _strict_loads(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def capacity_document() -> RunDocument:
    """A capacity search whose probe's headroom is infinite (an SLO measured 0) and whose
    goodput is NaN: numbers JSON cannot hold as numbers."""
    probe = ProbeOutcome(2.0, True, (), math.inf, math.nan, 1.0)
    search = CapacityResult("users", 2.0, None, (probe,), "budget", 1.0, 10.0)
    recorded = RecordedCapacity(Provenance("t.py::test_capacity"), SERVED, LoadShape.closed(1),
                                search)
    return RunDocument.new([], {"cpu_model": "x"}, [recorded])


def test_documents_are_strict_json_and_keep_non_finite_numbers(tmp_path: Path) -> None:
    path = write_run(capacity_document(), tmp_path / "run.json")
    raw = _strict_loads(path.read_text())  # no Infinity, no NaN: other tools read it
    [probe] = raw["searches"][0]["probes"]
    assert (probe["headroom"], probe["goodput"]) == (json_number(math.inf), json_number(math.nan))
    back = load_run(path).searches[0].search  # type: ignore[union-attr]
    assert back.probes[0].headroom == math.inf
    assert back.probes[0].goodput is not None and math.isnan(back.probes[0].goodput)


def test_an_older_document_with_infinity_in_it_still_reads(tmp_path: Path) -> None:
    """Files written before strict JSON hold the bare constants: read as the documented text."""
    text = json.dumps(capacity_document().to_json())
    assert "Infinity" in text and "NaN" in text
    path = tmp_path / "old.json"
    path.write_text(text)
    back = load_run(path).searches[0].search  # type: ignore[union-attr]
    assert back.probes[0].headroom == math.inf


# --- modes and durability --------------------------------------------------------------------


def test_files_get_the_umask_mode_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        written = write_run(document(), tmp_path / "run.json")
        saved = save_run(document(), tmp_path / "store", "before")
        write_atomic(tmp_path / "report.md", "x")
    finally:
        os.umask(old)
    for path in (written, saved, tmp_path / "report.md"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_the_directory_is_synced_after_the_rename(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_run(document(), tmp_path / "run.json")
    assert synced == ["file", "dir"]
    synced.clear()
    save_run(document(), tmp_path / "store", "before")
    assert synced[-1] == "dir" and "file" in synced


# --- the plugin: the store before the report, outputs checked before any server --------------

KNOWN_RESULT = '''
import pytest
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.window import WindowResult

MS = 1_000_000

@pytest.fixture
def llmperf_load(llmperf_recorder, llmperf_target):
    served = ServedInfo(llmperf_target.backend, llmperf_target.model, "fake 1.0")

    def load(**_):
        records = tuple(RequestRecord(i, i * 100 * MS, (i * 100 * MS + 20 * MS,
                        i * 100 * MS + 30 * MS), i * 100 * MS + 30 * MS, 2, TokenSource.USAGE)
                        for i in range(3))
        run = LoadRun(records, 0, records[-1].end_ns, 1, 0)
        result = WindowResult(served, LoadShape.closed(1), 2, run)
        llmperf_recorder.record_window(result, None)
        return result

    return load
'''


@pytest.fixture
def known(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeconftest(KNOWN_RESULT)
    pytester.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n')
    return pytester


def test_a_report_that_cannot_be_written_costs_no_saved_run(known: pytest.Pytester) -> None:
    """The report's directory becomes a file during the run (after the check at the start):
    the result document and the saved run are written all the same, the session fails, and
    the message names the option."""
    known.makepyfile(test_x="""
        from pathlib import Path

        def test_x(llmperf_target, llmperf_load, llmperf_slo):
            llmperf_slo.check(llmperf_load())
            Path("out").write_text("a file where the report's directory was")
    """)
    result = known.runpytest("--llmperf-report", "out/report.md", "--llmperf-save", "before",
                             "--llmperf-json", "run.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines([
        "llmperf: could not write the markdown report (--llmperf-report (command line))*"])
    assert load_run(known.path / "run.json").windows
    assert load_run(known.path / "llmperf-output" / "results.json").windows
    assert [run.name for run in saved_runs(known.path / ".llmperf")] == ["before"]


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--llmperf-report", "a_directory", "it is a directory, not a file"),
    ("--llmperf-report", "a_file/report.md", "a_file is a file, not a directory"),
    ("--llmperf-json", "a_file/deeper/run.json", "a_file is a file, not a directory"),
    ("--llmperf-output-dir", "a_file", "it is a file, not a directory"),
    ("--llmperf-storage", "a_file/store", "a_file is a file, not a directory"),
])
def test_an_output_that_cannot_be_written_stops_pytest_before_any_test(
        known: pytest.Pytester, option: str, value: str, says: str) -> None:
    (known.path / "a_directory").mkdir()
    (known.path / "a_file").write_text("x")
    known.makepyfile(test_x="""
        def test_x(llmperf_target, llmperf_load):
            raise AssertionError("a test ran: a server would have started")
    """)
    extra = ["--llmperf-save", "before"] if option == "--llmperf-storage" else []
    result = known.runpytest(option, value, *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert f"{option} (command line): cannot write " in error and says in error
    assert "a server would have started" not in result.stdout.str()


def test_the_default_output_dir_is_named_when_it_cannot_be_written(
        known: pytest.Pytester) -> None:
    (known.path / "llmperf-output").write_text("x")
    known.makepyfile(test_x="def test_x(llmperf_target, llmperf_load):\n    pass\n")
    result = known.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llmperf-output-dir (default): cannot write" in result.stderr.str()


def test_collecting_only_writes_nothing_so_checks_nothing(known: pytest.Pytester) -> None:
    (known.path / "llmperf-output").write_text("x")
    known.makepyfile(test_x="def test_x(llmperf_target, llmperf_load):\n    pass\n")
    assert known.runpytest("--collect-only", "-q").ret == pytest.ExitCode.OK


def test_a_file_system_without_hard_links_still_never_overwrites(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def no_links(_source: object, _target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    storage = tmp_path / "store"
    first = save_run(document("first"), storage, "before")
    monkeypatch.setattr(documents, "saved_runs", lambda _storage: [])  # a stale listing
    second = save_run(document("second"), storage, "before")
    monkeypatch.undo()
    assert [p.name for p in (first, second)] == ["0001_before.json", "0002_before.json"]
    assert load_run(first).fingerprint["git_commit"] == "first"
    assert [p.name for p in storage.iterdir() if p.name.startswith(".0")] == []  # no leftovers


def test_a_stored_request_takes_one_line_and_a_list_of_numbers_no_more(tmp_path: Path) -> None:
    """Written one number a line, a window of 64 requests took thousands of lines; each
    request is now one line, and the document still reads back whole."""
    from pytest_llmperf.results.records import RequestRecord, TokenSource

    records = tuple(RequestRecord(i, i * 1_000_000, tuple(i * 1_000_000 + k * 10_000_000
                                                          for k in range(1, 33)),
                                  i * 1_000_000 + 330_000_000, 32, TokenSource.USAGE, 20,
                                  TokenSource.USAGE, "length") for i in range(64))
    window = WindowResult(ServedInfo("llamacpp", "m", "e"), LoadShape.closed(4), 32,
                          LoadRun(records, 0, 400_000_000, 4, 0))
    stored = RunDocument.new([RecordedWindow(Provenance("t.py::test_x"), window)], {})
    path = write_run(stored, tmp_path / "run.json")
    lines = path.read_text().splitlines()
    request_lines = [line for line in lines if line.startswith('{"chunk_us":[')]
    assert len(request_lines) == 64
    assert len(lines) < 400  # the rest of the document, indented for a reader
    _strict_loads(path.read_text())
    assert load_run(path).to_json() == stored.to_json()

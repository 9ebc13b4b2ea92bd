"""Comparing with a baseline: gates parse (CLI and thresholds.toml) or fail naming the value,
stored windows decode to the same metrics, and a comparison of recorded windows gives the
verdict the injected change calls for."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.results.comparison import Row
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.recorded import Provenance, RecordedWindow
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.thresholds import ThresholdError, parse_gate, parse_thresholds
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.settings.resolve import SettingError, resolve_settings
from pytest_llmperf.store.compare import (
    ROW_METRICS,
    compare_windows,
    group_windows,
    hardware_differences,
)
from pytest_llmperf.store.documents import RunDocument, StoreError, load_run

MS = 1_000_000


def closed_loop(n: int, tpot_ms: float, *, seed: int, users: int = 1, tokens: int = 32,
                ttft_ms: float = 50.0) -> LoadRun:
    """``n`` requests of ``users`` closed-loop users whose per-token time is lognormal around
    ``tpot_ms`` (sdlog 0.1), each sent when that user's previous answer ended."""
    rng = random.Random(seed)
    free = [0] * users
    records = []
    for index in range(n):
        user = min(range(users), key=free.__getitem__)
        send = free[user]
        first = send + int(ttft_ms * rng.lognormvariate(0, 0.1) * MS)
        step = tpot_ms * rng.lognormvariate(0, 0.1) * MS
        chunks = tuple(first + int(step * i) for i in range(tokens))
        records.append(RequestRecord(index, send, chunks, chunks[-1] + 1000, tokens,
                                     TokenSource.USAGE, 20, TokenSource.USAGE, "length"))
        free[user] = chunks[-1] + 1000
    return LoadRun(tuple(records), 0, max(free), users, 0)


def window(run: LoadRun, engine: str = "engine 1") -> WindowResult:
    return WindowResult(ServedInfo("openai", "stub", engine), LoadShape.closed(run.concurrency),
                        32, run)


def recorded(run: LoadRun, nodeid: str = "t.py::test_x[openai-stub]",
             call: int = 1) -> RecordedWindow:
    return RecordedWindow(Provenance(nodeid, call), window(run))


# --- gates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "tolerance", "relative"), [
    ("tpot_ms.p95:10%", 0.10, True),
    ("ttft_ms.p95:50ms", 50.0, False),
    ("ttft_ms.p95: 50 ms", 50.0, False),
    ("decode_tokens_per_s.mean:2tok/s", 2.0, False),
    ("output_token_throughput:5%", 0.05, True),
    ("tpot_ms.p95 regresses < 10%", 0.10, True),
])
def test_gates_parse(text: str, tolerance: float, relative: bool) -> None:
    gate = parse_gate(text, "cli")
    assert (gate.tolerance, gate.relative) == (pytest.approx(tolerance), relative)


@pytest.mark.parametrize(("text", "message"), [
    ("tpot_ms.p95:10", "give the tolerance in % or in tpot_ms's unit (ms)"),
    ("tpot_ms.p95:10s", "give the tolerance in % or in tpot_ms's unit (ms)"),
    ("tpot_ms:10%", "tpot_ms needs a statistic"),
    ("tpot_ms.max:10%", "cannot be compared with a baseline"),
    ("error_rate:10%", "cannot be compared with a baseline"),
    ("speed.p95:10%", "unknown metric 'speed'"),
    ("tpot_ms.p95 10%", "cannot read this regression gate"),
])
def test_bad_gates_name_the_value(text: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=r"^cli: ") as caught:
        parse_gate(text, "cli")
    assert message in str(caught.value)


def test_the_command_line_takes_several_gates_and_names_a_bad_one() -> None:
    settings = resolve_settings({"compare_fail": "tpot_ms.p95:10%,ttft_ms.p95:50ms",
                                 "compare": "before"}, {}, {}, Path("."))
    assert [gate.key for gate in settings.store.compare_fail] == ["tpot_ms.p95", "ttft_ms.p95"]
    with pytest.raises(SettingError) as caught:
        resolve_settings({"compare": "before"},
                         {"LLMPERF_COMPARE_FAIL": "tpot_ms.p95:10%,ttft_ms.p95:fast"}, {},
                         Path("."))
    assert str(caught.value).startswith(
        "LLMPERF_COMPARE_FAIL (environment): invalid value 'tpot_ms.p95:10%,ttft_ms.p95:fast': "
        "'ttft_ms.p95:fast': cannot read this regression gate")


def test_a_gate_without_a_baseline_is_an_error_not_a_gate_that_never_fails() -> None:
    with pytest.raises(SettingError, match=r"^--llmperf-compare-fail \(command line\): a "
                                           r"regression gate needs a baseline"):
        resolve_settings({"compare_fail": "tpot_ms.p95:10%"}, {}, {}, Path("."))


def test_thresholds_keep_gates_apart_from_slos_with_the_same_precedence(tmp_path: Path) -> None:
    text = """
[defaults]
slo = ["tpot_ms.p95 < 100", "tpot_ms.p95 regresses < 10%"]
[tests.test_x]
slo = ["tpot_ms.p95 regresses < 5%"]
"""
    thresholds = parse_thresholds(text, tmp_path / "thresholds.toml")
    checks = thresholds.for_test(backend="b", model="m", test="test_x")
    gates = thresholds.gates_for_test(backend="b", model="m", test="test_x")
    assert [c.text for c in checks] == ["tpot_ms.p95 < 100"]
    assert [(g.text, g.origin) for g in gates] == [
        ("tpot_ms.p95 regresses < 5%", f"{tmp_path / 'thresholds.toml'}:5")]
    other = thresholds.gates_for_test(backend="b", model="m", test="test_y")
    assert [g.tolerance for g in other] == [pytest.approx(0.10)]


def test_a_bad_gate_in_thresholds_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(ThresholdError, match=r"thresholds.toml:3: 'tpot_ms.p95 regresses < 10'"):
        parse_thresholds('\n[defaults]\nslo = ["tpot_ms.p95 regresses < 10"]\n',
                         tmp_path / "thresholds.toml")


# --- stored windows -------------------------------------------------------------------------


def test_a_stored_window_has_the_metrics_of_the_run() -> None:
    run = closed_loop(40, 10.0, seed=1, users=4)
    stored = json.loads(json.dumps(window(run).to_json()))
    again = WindowResult.from_json(Fields(stored)).metrics
    original = summarize(run)
    for name in ("ttft_ms", "tpot_ms", "e2el_ms"):
        assert again.value(name, "p95") == pytest.approx(original.value(name, "p95"), abs=0.002)
    assert again.value("output_token_throughput") == pytest.approx(
        original.value("output_token_throughput"), rel=1e-6)


SCHEMA1 = Path(__file__).parents[1] / "data" / "results_schema1.json"


def _stored(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "0001_baseline.json"
    path.write_text(json.dumps(document))
    return path


def _without_records(schema: int) -> dict[str, Any]:
    """A stored run whose first window lost its requests."""
    if schema == 1:
        document = json.loads(SCHEMA1.read_text())
        del document["windows"][0]["records"]
        return document
    good = RunDocument.new([recorded(closed_loop(4, 10.0, seed=1), "t.py::test_x")], {})
    document = json.loads(json.dumps(good.to_json()))
    del document["windows"][0]["window"]["records"]
    return document


@pytest.mark.parametrize(("schema", "where"), [
    (2, r"windows\[0\]\.window\b.*\brecords\b"),
    (1, r"windows\[0\]: .*\brecords\b"),
], ids=["schema2", "schema1"])
def test_a_window_without_records_is_refused_naming_the_test(tmp_path: Path, schema: int,
                                                             where: str) -> None:
    """A baseline window whose requests are missing cannot be compared: it is refused, naming
    the file and the window (the old reader named the test), not read as a window of no
    requests (against which no percentile gate could ever fail)."""
    path = _stored(tmp_path, _without_records(schema))
    with pytest.raises(StoreError, match=where) as caught:
        load_run(path)
    assert str(path) in str(caught.value)


def test_a_window_of_nothing_but_its_test_is_refused(tmp_path: Path) -> None:
    old = json.loads(SCHEMA1.read_text())
    path = _stored(tmp_path, {**old, "windows": [{"nodeid": "t.py::test_x", "scalars": {}}]})
    with pytest.raises(StoreError, match=r"windows\[0\]: .* is missing") as caught:
        load_run(path)
    assert str(path) in str(caught.value)


def test_windows_group_by_test_and_call_and_old_entries_by_position(tmp_path: Path) -> None:
    run = closed_loop(4, 10.0, seed=1)
    first, second = recorded(run, call=1), recorded(run, call=2)
    repeat = recorded(run, call=2)
    # A schema 1 document from before calls were numbered: the n-th window of a test is its
    # n-th call.
    old = json.loads(SCHEMA1.read_text())
    entry = {k: v for k, v in old["windows"][0].items() if k != "call"}
    entry["nodeid"] = "t.py::test_old"
    path = _stored(tmp_path, {**old, "windows": [entry, dict(entry)], "searches": []})
    groups = group_windows([first, second, repeat, *load_run(path).windows])
    assert {key: len(windows) for key, windows in groups.items()} == {
        ("t.py::test_x[openai-stub]", 1): 1, ("t.py::test_x[openai-stub]", 2): 2,
        ("t.py::test_old", 1): 1, ("t.py::test_old", 2): 1}
    assert groups[("t.py::test_x[openai-stub]", 2)] == [second.window, repeat.window]


def test_hardware_differences_name_each_fact() -> None:
    base = {"cpu_model": "A", "cpu_cores": 2, "gpu_models": [], "os": "x"}
    assert hardware_differences(base, {**base, "os": "y"}) == []
    assert hardware_differences(base, {**base, "cpu_cores": 16}) == [("cpu_cores", 2, 16)]


# --- comparisons ----------------------------------------------------------------------------


def _rows(baseline: list[LoadRun], current: list[LoadRun], *gates: str) -> dict[str, Row]:
    comparison = compare_windows([window(r) for r in baseline], [window(r) for r in current],
                                 [parse_gate(g, "cli") for g in gates])
    return {row.metric: row for row in comparison.rows}


def test_a_real_slowdown_regresses_and_fails_its_gate() -> None:
    rows = _rows([closed_loop(64, 10.0, seed=1, users=4)],
                 [closed_loop(64, 13.0, seed=2, users=4)], "tpot_ms.p95:10%")
    tpot = rows["tpot_ms.p95"]
    assert tpot.verdict == "regressed" and tpot.failed
    assert tpot.low is not None and tpot.low > 0.10
    assert 0.15 < tpot.change < 0.45
    assert rows["tpot_ms.mean"].verdict == "regressed" and not rows["tpot_ms.mean"].failed
    assert rows["decode_tokens_per_s.mean"].verdict == "regressed"  # higher is better
    assert rows["ttft_ms.mean"].verdict != "regressed"  # TTFT was not changed


def test_the_same_distribution_fails_no_gate() -> None:
    rows = _rows([closed_loop(64, 10.0, seed=1, users=4)],
                 [closed_loop(64, 10.0, seed=2, users=4)], "tpot_ms.p95:10%", "tpot_ms.mean:5%")
    assert not any(row.failed for row in rows.values())
    assert rows["tpot_ms.mean"].verdict in ("no significant change", "inconclusive")


def test_a_speedup_is_improved() -> None:
    rows = _rows([closed_loop(64, 10.0, seed=1)], [closed_loop(64, 7.0, seed=2)])
    assert rows["tpot_ms.mean"].verdict == "improved"
    assert rows["decode_tokens_per_s.mean"].verdict == "improved"


def test_too_few_requests_are_inconclusive_and_say_how_many_would_do() -> None:
    rows = _rows([closed_loop(8, 10.0, seed=1)], [closed_loop(8, 10.8, seed=2)],
                 "tpot_ms.mean:5%")
    row = rows["tpot_ms.mean"]
    assert row.verdict == "inconclusive" and not row.failed
    assert row.needed is not None and row.needed > 8
    assert "requests per window would settle it" in row.describe()


def test_an_absolute_gate_is_held_in_the_metrics_unit() -> None:
    # +3 ms per token over ~10 ms: beyond 1 ms, within 5 ms.
    base, now = [closed_loop(64, 10.0, seed=1)], [closed_loop(64, 13.0, seed=2)]
    assert _rows(base, now, "tpot_ms.mean:1ms")["tpot_ms.mean"].failed
    assert not _rows(base, now, "tpot_ms.mean:5ms")["tpot_ms.mean"].failed


def test_whole_window_numbers_need_repeats_for_an_interval() -> None:
    one = _rows([closed_loop(32, 10.0, seed=1)], [closed_loop(32, 13.0, seed=2)],
                "output_token_throughput:5%")
    row = one["output_token_throughput"]
    assert row.verdict == "inconclusive" and not row.failed
    assert "--llmperf-repeats" in (row.note or "")
    repeats = _rows([closed_loop(32, 10.0, seed=s) for s in (1, 2, 3)],
                    [closed_loop(32, 13.0, seed=s) for s in (4, 5, 6)],
                    "output_token_throughput:5%")
    assert repeats["output_token_throughput"].verdict == "regressed"
    assert repeats["output_token_throughput"].failed
    row = repeats["output_token_throughput"]
    assert row.low is not None and row.high is not None
    assert row.low < row.change < row.high < 0  # the change of the ratio the interval is of
    against_runs = _rows([closed_loop(32, 10.0, seed=s) for s in (1, 2, 3)],
                         [closed_loop(32, 10.2, seed=4)], "output_token_throughput:5%")
    assert against_runs["output_token_throughput"].low is not None


def test_against_several_runs_an_open_verdict_asks_for_runs_not_requests() -> None:
    rows = _rows([closed_loop(16, t, seed=s) for s, t in ((1, 9.0), (2, 10.0), (3, 11.0))],
                 [closed_loop(16, 10.5, seed=4)], "tpot_ms.mean:5%")
    row = rows["tpot_ms.mean"]
    assert row.verdict == "inconclusive" and row.needed is None
    assert "more runs (--llmperf-compare-runs, --llmperf-repeats) narrow it" in (row.note or "")


def test_every_row_metric_is_compared() -> None:
    rows = _rows([closed_loop(16, 10.0, seed=1)], [closed_loop(16, 10.0, seed=2)])
    assert list(rows) == list(ROW_METRICS)


# --- the options, as pytest reads them -----------------------------------------------------


def test_a_repeated_gate_flag_is_read_as_one_list(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llmperf-compare=x", "--llmperf-compare-fail",
                                "tpot_ms.p95:10%", "--llmperf-compare-fail", "ttft_ms.p95:soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("--llmperf-compare-fail (command line): invalid value "
            "'tpot_ms.p95:10%,ttft_ms.p95:soon': 'ttft_ms.p95:soon'") in result.stderr.str()


def test_a_missing_baseline_stops_pytest_naming_what_is_saved(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llmperf-compare", "before")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (f"--llmperf-compare (command line): no run saved as 'before' in "
            f"{pytester.path / '.llmperf'} (saved: none)") in result.stderr.str()
    (pytester.path / "broken.json").write_text('{"schema": 1, "crea')
    result = pytester.runpytest("--llmperf-compare", "broken.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "broken.json is not valid JSON (truncated or corrupt?)" in result.stderr.str()


def test_a_yes_no_flag_alone_means_yes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one(pytestconfig):\n"
                                 "    assert pytestconfig.getoption('llmperf_autosave') == 'yes'\n")
    assert pytester.runpytest("--llmperf-autosave").ret == pytest.ExitCode.OK


def test_a_client_view_that_moved_more_than_the_engine_says_so() -> None:
    base_run, now_run = closed_loop(64, 10.0, seed=1), closed_loop(64, 13.0, seed=2)
    base = dataclasses.replace(window(base_run),
                               server_metrics={"server_decode_ms_per_token": 10.0})
    now = dataclasses.replace(window(now_run), server_metrics={"server_decode_ms_per_token": 10.5})
    note = compare_windows([base], [now]).cross_check
    assert note is not None and note.startswith(
        "the engine's own decode time went 10.00 -> 10.50 ms/token (+5.0 %) while the "
        "client's TPOT mean moved +")
    now = dataclasses.replace(now, server_metrics={"server_decode_ms_per_token": 13.0})
    assert compare_windows([base], [now]).cross_check is None
    now = dataclasses.replace(now, server_metrics=None)
    assert compare_windows([base], [now]).cross_check is None

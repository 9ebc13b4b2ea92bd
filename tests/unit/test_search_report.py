"""Recorded sweeps and capacity searches as the reports show them: markdown, terminal line,
the result document and the chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.report.load_charts import write_capacity_chart, write_sweep_chart
from pytest_llmperf.report.search_markdown import searches_markdown
from pytest_llmperf.report.terminal import capacity_lines
from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.recorded import (
    Provenance,
    RecordedCapacity,
    RecordedSweep,
    search_from_json,
)
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.sweep import SweepResult
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.store.documents import RunDocument, load_run, write_run

MS = 1_000_000
SERVED = ServedModel("llamacpp", "smollm2-135m", Endpoint("http://127.0.0.1:9/v1", "m"),
                     engine="xllamacpp 2026.10.1")


def window(users: int, tpot_ms: float) -> WindowResult:
    records = []
    for i in range(8):
        send = i * 1000 * MS
        chunks = tuple(send + 200 * MS * users + int(k * tpot_ms * MS) for k in range(10))
        records.append(RequestRecord(i, send, chunks, chunks[-1], 10))
    run = LoadRun(tuple(records), 0, records[-1].end_ns, users, 0)
    return WindowResult(SERVED.info, LoadShape.closed(users), 10, run)


def capacity() -> CapacityResult:
    probes = []
    for n in (1, 2, 4, 3, 3, 4):
        probe = window(n, 25.0 * n)
        probes.append(ProbeOutcome(n, n <= 3,
                                   () if n <= 3 else ("tpot_ms.p95 = 120 ms -- x",),
                                   headroom=n / 3.5, goodput=n * 0.4, duration_s=5.0,
                                   point=LoadPoint.of(probe), window=probe))
    return CapacityResult("users", 3, 4, tuple(probes), "boundary found", 31.0, 45.0)


SLO_LINES = {"tpot_ms.p95": 100.0, "ttft_ms.p95": 1000.0}


def recorded_capacity(nodeid: str = "t.py::test_cap[x]") -> RecordedCapacity:
    return RecordedCapacity(Provenance(nodeid), SERVED.info, LoadShape.closed(1), capacity(),
                            SLO_LINES)


def through_json(recorded: RecordedCapacity | RecordedSweep) -> RecordedCapacity | RecordedSweep:
    """Read back from JSON text, as a search travels across xdist and into the store."""
    back = search_from_json(Fields(json.loads(json.dumps(recorded.to_json(), allow_nan=False))))
    assert isinstance(back, type(recorded))
    return back


def test_a_recorded_capacity_reads_as_a_headline_and_a_probe_table() -> None:
    recorded = recorded_capacity()
    search = recorded.search
    assert search.summary == "max 3 users: 3 users passed 2 of 2, 4 users failed 2 of 2"
    assert (search.capacity, search.first_failing, search.boundary) == (3, 4, "gradual")
    assert search.goodput == pytest.approx(1.2)
    # Its JSON form says the same, and reads back to the same search.
    document = recorded.to_json()
    assert document["summary"] == search.summary
    assert (document["capacity"], document["first_failing"], document["boundary"]) == (
        3, 4, "gradual")
    assert document["goodput"] == pytest.approx(1.2)
    back = through_json(recorded)
    assert isinstance(back, RecordedCapacity)
    assert (back.search.summary, back.search.boundary) == (search.summary, "gradual")
    assert back.search.goodput == pytest.approx(1.2)
    # The controller renders what came back (plugin.reporter); the test's own record reads
    # the same.
    for shown in (back, recorded):
        text = "\n".join(searches_markdown([shown]))
        assert "## Capacity\n" in text
        assert "| `test_cap[x]` | smollm2-135m on llamacpp | 3 users " in text
        assert "| 4 users | **FAIL**  |" in text and "tpot_ms.p95 = 120 ms " in text
        assert "Stopped: boundary found, after 31 s of a 45 s budget." in text
        (line,) = capacity_lines([shown])
        assert line.startswith("test_cap[x]: max 3 users: 3 users passed 2 of 2")
        assert "gradual boundary; broke first: tpot_ms.p95 = 120 ms [6 probes, 31 s]" in line


def test_the_result_document_keeps_searches_apart_from_windows(tmp_path: Path) -> None:
    run = RunDocument.new([], {"cpu_model": "x"}, [recorded_capacity()])
    document = json.loads(json.dumps(run.to_json()))
    assert document["windows"] == []
    assert [probe["load"] for probe in document["searches"][0]["probes"]] == [
        1, 2, 4, 3, 3, 4]
    stored = load_run(write_run(run, tmp_path / "run.json"))
    assert stored.windows == ()
    (search,) = stored.searches
    assert isinstance(search, RecordedCapacity)
    assert [probe.load for probe in search.search.probes] == [1, 2, 4, 3, 3, 4]


def test_capacity_and_sweep_charts_are_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = write_capacity_chart(recorded_capacity(), tmp_path / "capacity.png")
    assert png is not None and png.stat().st_size > 10_000
    sweep = SweepResult("users", tuple(window(n, 20.0 * n) for n in (1, 2, 4)))
    swept = RecordedSweep(Provenance("t.py::test_sweep[x]"), SERVED.info, sweep.dimension,
                          sweep.rows, (1, 2, 3), SLO_LINES)
    png = write_sweep_chart(swept, tmp_path / "sweep.png")
    assert png is not None and png.stat().st_size > 10_000
    # One load is no curve: no chart.
    one = RecordedSweep(swept.provenance, swept.served, swept.dimension, swept.rows[:1],
                        swept.calls[:1], SLO_LINES)
    assert write_sweep_chart(one, tmp_path / "one.png") is None

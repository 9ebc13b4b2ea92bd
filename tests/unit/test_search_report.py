"""Sweep and capacity entries as the reports show them: markdown, terminal line, junit
properties, the result document and the chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import PerfResult
from pytest_llmperf.load.shapes import LoadShape
from pytest_llmperf.report.entry import capacity_entry, sweep_entry
from pytest_llmperf.report.load_charts import write_load_chart
from pytest_llmperf.report.search_markdown import searches_markdown
from pytest_llmperf.report.terminal import capacity_lines
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.sweep import SweepResult
from pytest_llmperf.searches.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.store.documents import run_document

MS = 1_000_000
SERVED = ServedModel("llamacpp", "smollm2-135m", Endpoint("http://127.0.0.1:9/v1", "m"),
                     engine="xllamacpp 2026.10.1")


def window(users: int, tpot_ms: float) -> PerfResult:
    records = []
    for i in range(8):
        send = i * 1000 * MS
        chunks = tuple(send + 200 * MS * users + int(k * tpot_ms * MS) for k in range(10))
        records.append(RequestRecord(i, send, chunks, chunks[-1], 10))
    run = LoadRun(tuple(records), 0, records[-1].end_ns, users, 0)
    return PerfResult(SERVED, run, summarize(run), LoadShape.closed(users), 10)


def capacity() -> CapacityResult:
    probes = tuple(ProbeOutcome(n, n <= 3, () if n <= 3 else ("tpot_ms.p95 = 120 ms -- x",),
                                headroom=n / 3.5, goodput=n * 0.4, duration_s=5.0,
                                result=window(n, 25.0 * n))
                   for n in (1, 2, 4, 3, 3, 4))
    return CapacityResult("users", 3, 4, probes, "boundary found", 31.0, 45.0)


SLO_LINES = {"tpot_ms.p95": 100.0, "ttft_ms.p95": 1000.0}


def test_a_capacity_entry_reads_as_a_headline_and_a_probe_table() -> None:
    entry = {**capacity_entry(capacity(), None, SLO_LINES), "nodeid": "t.py::test_cap[x]"}
    assert entry["summary"] == "max 3 users: 3 users passed 2 of 2, 4 users failed 2 of 2"
    assert (entry["capacity"], entry["first_failing"], entry["boundary"]) == (3, 4, "gradual")
    assert entry["goodput"] == pytest.approx(1.2)
    text = "\n".join(searches_markdown([entry]))
    assert "## Capacity\n" in text
    assert "| `test_cap[x]` | smollm2-135m on llamacpp | 3 users " in text
    assert "| 4 users | **FAIL**  |" in text and "tpot_ms.p95 = 120 ms " in text
    assert "Stopped: boundary found, after 31 s of a 45 s budget." in text
    (line,) = capacity_lines([entry])
    assert line.startswith("test_cap[x]: max 3 users: 3 users passed 2 of 2")
    assert "gradual boundary; broke first: tpot_ms.p95 = 120 ms [6 probes, 31 s]" in line


def test_the_result_document_keeps_searches_apart_from_windows() -> None:
    entry = capacity_entry(capacity(), None, SLO_LINES)
    document = json.loads(json.dumps(run_document([], {"cpu_model": "x"}, [entry])))
    assert document["windows"] == []
    assert [row["load"] for row in document["searches"][0]["rows"]] == [1, 2, 4, 3, 3, 4]


def test_capacity_and_sweep_charts_are_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    entry = capacity_entry(capacity(), None, SLO_LINES)
    png = write_load_chart(entry, tmp_path / "capacity.png")
    assert png is not None and png.stat().st_size > 10_000
    sweep = SweepResult("users", tuple(window(n, 20.0 * n) for n in (1, 2, 4)))
    swept = sweep_entry(sweep, None, [1, 2, 3], SLO_LINES)
    png = write_load_chart(swept, tmp_path / "sweep.png")
    assert png is not None and png.stat().st_size > 10_000
    # One load is no curve: no chart.
    assert write_load_chart({**swept, "rows": swept["rows"][:1]}, tmp_path / "one.png") is None

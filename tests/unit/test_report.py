"""Report rendering of the engine's own numbers beside the client's: the window's JSON form,
junit properties, markdown.  (The plugin's whole report path is in test_plugin.py.)"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.report.junit import window_properties
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.report.terminal import render_terminal_table
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.prompt_origin import PromptOrigin
from pytest_llmperf.results.recorded import Provenance, RecordedWindow
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.slo import Verdict
from pytest_llmperf.results.window import WindowResult

MS = 1_000_000


def record(i: int) -> RequestRecord:
    """TTFT 200 ms, then 9 more tokens 20 ms apart; 30 prompt tokens."""
    send = i * 10_000 * MS
    chunks = tuple(send + 200 * MS + k * 20 * MS for k in range(10))
    return RequestRecord(i, send, chunks, chunks[-1], 10, TokenSource.USAGE, 30,
                         TokenSource.USAGE, "length")


def result(server_metrics: Mapping[str, float] | None,
           notes: tuple[str, ...] = ()) -> WindowResult:
    served = ServedModel("vllm", "qwen32b-gptq", Endpoint("http://127.0.0.1:9/v1", "m"),
                         engine="vllm 0.11.0")
    records = tuple(record(i) for i in range(4))
    run = LoadRun(records, 0, records[-1].end_ns, 1, 0)
    return WindowResult(served.info, LoadShape.closed(1), 10, run,
                        server_metrics=server_metrics, server_notes=notes)


VLLM_SERVER = {
    "server_ttft_ms_mean": 187.25,
    "server_tpot_ms_mean": 19.5,
    "server_e2e_ms_mean": 371.0,
    "prompt_tokens": 120.0,
    "generation_tokens": 40.0,
    "prefix_cache_hit_rate": 0.0,
    "kv_cache_usage_peak": 0.0625,
    "requests_running_peak": 1.0,
}


@pytest.fixture(autouse=True)
def quick_host_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    # NVML and git are not what these tests are about.
    monkeypatch.setattr("pytest_llmperf.report.markdown.host_facts",
                        lambda rootdir: {"host": "test"})


def recorded(window: WindowResult, verdicts: Sequence[Verdict] = ()) -> RecordedWindow:
    """The window as the test ``test_x[vllm-qwen32b-gptq]`` recorded it, passed."""
    return RecordedWindow(Provenance("test_x.py::test_x[vllm-qwen32b-gptq]", outcome="passed"),
                          window, tuple(verdicts))


def round_trip(window: RecordedWindow) -> RecordedWindow:
    """Through JSON text, as it travels on the report object (also across xdist)."""
    text = json.dumps(window.to_json(), allow_nan=False)
    return RecordedWindow.from_json(Fields(json.loads(text)))


def test_the_window_carries_server_metrics_through_json() -> None:
    window = result(VLLM_SERVER, ("a note",))
    assert window.server_metrics == VLLM_SERVER
    assert window.server_notes == ("a note",)
    assert window.client_tokens == (120, 40)
    document = recorded(window).to_json()
    assert document["server_metrics"] == VLLM_SERVER
    assert document["server_notes"] == ["a note"]
    back = round_trip(recorded(window)).window
    assert back.server_metrics == VLLM_SERVER
    assert back.server_notes == ("a note",)
    assert back.client_tokens == (120, 40)  # recomputed from the stored requests
    assert result(None).server_metrics is None
    assert round_trip(recorded(result(None))).window.server_metrics is None


def test_junit_properties_name_server_metrics() -> None:
    props = dict(window_properties(result(VLLM_SERVER)))
    assert props["server.server_tpot_ms_mean"] == 19.5
    assert props["server.generation_tokens"] == 40.0
    assert props["tpot_ms.mean"] == pytest.approx(20.0)
    assert not any(name.startswith("server.") for name, _ in window_properties(result(None)))


def test_markdown_shows_client_and_server_side_by_side(tmp_path: Path) -> None:
    markdown = render_markdown([recorded(result(VLLM_SERVER))], tmp_path)
    lines = markdown.splitlines()
    header = next(line for line in lines if "client (mean, p95)" in line)
    assert "server (mean)" in header
    ttft = next(line for line in lines if line.startswith("| TTFT (ms)"))
    assert [cell.strip() for cell in ttft.strip("|").split("|")] == [
        "TTFT (ms)", "200.0, 200.0", "187.2"]  # format_number: one decimal from 10 up
    tpot = next(line for line in lines if line.startswith("| TPOT (ms)"))
    assert "20.0, 20.0" in tpot and "19.5" in tpot
    assert "| generated tokens" in markdown and "40 (client: 40)" in markdown
    assert "120 (client: 120)" in markdown
    assert "| KV cache usage peak" in markdown and "0.0625" in markdown
    assert "Server numbers are the engine's own Prometheus metrics" in markdown


def test_llamacpp_decode_time_stands_in_for_a_tpot_histogram(tmp_path: Path) -> None:
    server = {"generation_tokens": 40.0, "prompt_tokens": 120.0,
              "server_decode_ms_per_token": 21.25, "server_prefill_ms_per_token": 3.5}
    markdown = render_markdown([recorded(result(server))], tmp_path)
    tpot = next(line for line in markdown.splitlines() if line.startswith("| TPOT (ms)"))
    assert "21.2 (decode time / generated tokens)" in tpot
    ttft = next(line for line in markdown.splitlines() if line.startswith("| TTFT (ms)"))
    assert ttft.rstrip(" |").endswith("-")  # llama.cpp has no TTFT histogram
    assert "prefill time per prompt token (ms)" in markdown


def test_no_server_metrics_no_server_tables_but_notes_are_shown(tmp_path: Path) -> None:
    plain = render_markdown([recorded(result(None))], tmp_path)
    assert "client (mean, p95)" not in plain
    assert "Server numbers" not in plain
    failed = render_markdown(
        [recorded(result({}, ("scrape of http://x/metrics before the window failed: "
                              "URLError: refused",)))], tmp_path)
    assert "client (mean, p95)" not in failed
    assert "- server metrics: scrape of http://x/metrics before the window failed" in failed


def test_windows_stored_before_server_metrics_still_render(tmp_path: Path) -> None:
    stored = recorded(result(None)).to_json()
    for key in ("server_metrics", "server_notes"):  # client tokens are counted from records
        del stored[key]
    window = RecordedWindow.from_json(Fields(json.loads(json.dumps(stored))))
    assert "## `test_x.py::test_x[vllm-qwen32b-gptq]`" in render_markdown([window],
                                                                                 tmp_path)


def test_terminal_table_stays_compact() -> None:
    # Server numbers go to the markdown report and junit, not to the terminal.
    with_server = render_terminal_table([recorded(result(VLLM_SERVER))])
    assert with_server == render_terminal_table([recorded(result(None))])


def test_answers_shorter_than_max_tokens_are_counted_and_called_out(tmp_path: Path) -> None:
    full = result(None)  # 10 tokens each, max_tokens 10
    assert full.short_answers == 0
    assert "ended before max_tokens" not in render_markdown([recorded(full)], tmp_path)
    # asked for 16, got 10
    short = WindowResult(full.served, LoadShape.closed(1), 16, full.run)
    assert short.short_answers == 4
    assert ("short_answers", 4) in window_properties(short)
    assert "**4 of 4 answers ended before max_tokens** (finish_reason stop" in \
        render_markdown([recorded(short)], tmp_path)


def test_prompt_seed_and_salt_resends_and_approximate_counts_are_reported(tmp_path: Path) -> None:
    import dataclasses

    base = result(None)
    records = (dataclasses.replace(base.run.records[0], resent=True),
               dataclasses.replace(base.run.records[1], output_token_source=TokenSource.TOKENIZER),
               *base.run.records[2:])
    run = dataclasses.replace(base.run, records=records)
    perf = dataclasses.replace(base, run=run,
                               prompts=PromptOrigin("built-in", seed=3, salt="9f0c2a71"))
    props = dict(window_properties(perf))
    assert (props["resent"], props["approximate_counts"]) == (1, 1)
    assert (props["prompts.seed"], props["prompts.salt"]) == (3, "9f0c2a71")
    markdown = render_markdown([recorded(perf)], tmp_path)
    assert "Prompts: built-in, seed 3, salt 9f0c2a71." in markdown
    assert "1 request(s) were sent a second time" in markdown
    assert "1 output counts are approximate" in markdown


@pytest.mark.parametrize(("policy", "cell", "summary", "listed"), [
    ("warn", "inconclusive (4 requests are too few", "0/1 pass, 1 inconclusive", True),
    ("fail", "**inconclusive, counted as a FAIL** (4 requests", "0/1 pass", True),
    ("pass", "inconclusive (4 requests are too few", "0/1 pass, 1 inconclusive", False),
])
def test_an_inconclusive_percentile_is_shown_as_such(tmp_path: Path, policy: str, cell: str,
                                                     summary: str, listed: bool) -> None:
    from pytest_llmperf.report.cells import verdict_summary
    from pytest_llmperf.report.terminal import inconclusive_lines
    from pytest_llmperf.results.slo import evaluate
    from pytest_llmperf.results.thresholds import parse_check

    perf = result(None)
    verdicts = evaluate(perf.metrics, [parse_check("ttft_ms.p95 < 1000", "thresholds.toml:2")],
                        inconclusive=policy)
    window = recorded(perf, verdicts)
    assert cell in render_markdown([window], tmp_path)
    assert verdict_summary(window.verdicts) == summary
    # The verdicts travel as JSON and read back the same (they were the entry's JSON).
    assert round_trip(window).verdicts == window.verdicts
    lines = inconclusive_lines([window])
    assert bool(lines) == listed
    if listed:
        assert lines[0].startswith("test_x[vllm-qwen32b-gptq]: ttft_ms.p95 = 200.0 ms, required "
                                   "< 1000 ms: inconclusive, 4 requests are too few")


# --- metrics a window could not know ----------------------------------------------------------


def reasoning_without_counts() -> WindowResult:
    """Answers that reasoned first, from a server that sent no reasoning token count, with no
    tokenizer to count them: reasoning_tokens and answer_tokens are unknown."""
    records = []
    for i in range(4):
        send = i * 10_000 * MS
        chunks = tuple(send + 200 * MS + k * 20 * MS for k in range(10))
        records.append(RequestRecord(i, send, chunks, chunks[-1], 10, TokenSource.USAGE, 30,
                                     TokenSource.USAGE, "length", reasoning_chunks=4,
                                     answer_start_ns=chunks[4], answer_end_ns=chunks[-1],
                                     reasoning_tokens=None))
    run = LoadRun(tuple(records), 0, records[-1].end_ns, 1, 0)
    served = ServedModel("openai", "r1", Endpoint("http://127.0.0.1:9/v1", "m"), engine="x")
    return WindowResult(served.info, LoadShape.closed(1), 10, run)


def test_junit_leaves_out_metrics_the_window_could_not_know() -> None:
    props = dict(window_properties(reasoning_without_counts()))
    assert all(value is not None for value in props.values()), [
        name for name, value in props.items() if value is None]
    assert not any(name.startswith(("reasoning_tokens.", "answer_tokens.")) for name in props)
    assert props["time_to_answer_ms.p95"] is not None  # what is known stays
    # The same for a plain window: no schedule, no answer split, nothing written as None.
    assert all(value is not None for _, value in window_properties(result(None)))


def test_markdown_says_why_a_metric_is_unknown(tmp_path: Path) -> None:
    window = reasoning_without_counts()
    text = render_markdown([RecordedWindow(Provenance("t.py::test_r"), window)],
                           rootdir=tmp_path)
    assert ("Unknown in this window: answer_decode_tokens_per_s, reasoning_tokens, "
            "answer_tokens: 4 answers reasoned first, and neither the server "
            "(usage.completion_tokens_details.reasoning_tokens) nor a tokenizer counted their "
            "reasoning tokens") in text


def test_junit_leaves_out_non_finite_figures() -> None:
    """junit's readers want numbers: an infinite or NaN figure (a rate of inf, a metric the
    engine reported as NaN) is left out as an unknown one is, never written as ``inf``/``nan``."""
    import math

    window = result({**VLLM_SERVER, "server_ttft_ms_mean": math.inf,
                     "prefix_cache_hit_rate": math.nan, "kv_cache_usage_peak": -math.inf})
    props = dict(window_properties(window))
    non_finite = [name for name, value in props.items()
                  if isinstance(value, float) and not math.isfinite(value)]
    assert non_finite == []
    assert "server.server_ttft_ms_mean" not in props
    assert "server.prefix_cache_hit_rate" not in props
    assert props["server.server_tpot_ms_mean"] == 19.5  # the finite ones stay


def test_recorded_capacity_properties_leave_out_non_finite_figures() -> None:
    """The recorder's own properties (a capacity search's headline figures) too."""
    import math
    from types import SimpleNamespace
    from typing import cast

    from pytest_llmperf.plugin.recorder import ResultRecorder
    from pytest_llmperf.plugin.session import LLMPerfSession
    from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
    from pytest_llmperf.results.recorded import RecordedCapacity

    item = SimpleNamespace(user_properties=[], nodeid="t.py::test_capacity")
    recorder = ResultRecorder(cast(pytest.Item, item), cast(LLMPerfSession, None))
    probe = ProbeOutcome(math.inf, True, headroom=math.nan, goodput=math.inf)
    search = CapacityResult("rate", math.inf, None, (probe,), "maximum load", 1.0, 60.0)
    served = result(None).served
    recorder.record_search(RecordedCapacity(Provenance(item.nodeid), served,
                                            LoadShape.open(math.inf), search))
    props = dict(item.user_properties)
    assert "llmperf.capacity.max_rate" not in props
    assert "llmperf.capacity.goodput" not in props
    assert props["llmperf.capacity.probes"] == 1  # the finite ones stay
    assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in props.values())


def test_the_report_opens_with_the_answer(tmp_path: Path) -> None:
    """One summary table first: every window's headline figures, its verdicts, what missed and
    by how much, and the marks; the details after it."""
    from pytest_llmperf.results.slo import evaluate
    from pytest_llmperf.results.thresholds import parse_check

    perf = result(None)  # TTFT 200 ms, TPOT 20 ms, 4 requests
    checks = [parse_check(text, "thresholds.toml:2") for text in
              ("tpot_ms.p95 < 10", "error_rate <= 0.01", "ttft_ms.p95 < 1000")]
    window = recorded(perf, evaluate(perf.metrics, checks, inconclusive="warn"))
    text = render_markdown([window], tmp_path)
    assert text.index("## Summary") < text.index("## Environment") < text.index(
        "## `test_x.py::test_x[vllm-qwen32b-gptq]`")
    summary = text[text.index("## Summary"):text.index("## Environment")]
    assert "1 measured window; 1 missed an SLO; 1 with an inconclusive SLO." in summary
    row = next(line for line in summary.splitlines() if line.startswith("| `test_x"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "`test_x[vllm-qwen32b-gptq]`" and cells[1] == "1 user"
    assert cells[4] == "20.0"  # TPOT p95 ms
    assert cells[8] == "0"  # goodput %: no request met the TPOT SLO
    assert cells[9] == "**FAIL** 1, pass 1, inconclusive 1"
    assert cells[10] == "tpot_ms.p95 20.0 ms (< 10, +10.0); ttft_ms.p95 inconclusive"
    assert cells[11] == "-"

"""Reports of the prompt datasets, the prefix cache and reasoning models: the figures the
window and search records carry (and their JSON form), the markdown and terminal text, the
prefix-cache comparison, and the sizing helpers behind the dataset fixtures."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import planned_prompts
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.report.search_markdown import searches_markdown
from pytest_llmperf.report.terminal import (
    cache_warning_lines,
    capacity_lines,
    render_terminal_table,
)
from pytest_llmperf.report.window_markdown import cache_lines, prompts_sentence
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.prefix_cache import PrefixCacheResult
from pytest_llmperf.results.prompt_origin import PromptOrigin, Scalar
from pytest_llmperf.results.recorded import (
    Provenance,
    RecordedPrefixCache,
    RecordedSweep,
    RecordedWindow,
    search_from_json,
)
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.sweep import SweepResult
from pytest_llmperf.results.window import CACHE_HEAD_ALLOWANCE, PromptCacheUse, WindowResult
from pytest_llmperf.searches.prefill import fitting_lengths
from pytest_llmperf.searches.prefix_cache import cache_unavailable
from pytest_llmperf.settings.resolve import resolve_settings

MS = 1_000_000
SERVED = ServedModel("llamacpp", "smollm2-135m", Endpoint("http://127.0.0.1:9/v1", "m"),
                     engine="xllamacpp 2026.10.1")
NODEID = "t.py::test_x[llamacpp-smollm2-135m]"


def rec(i: int, *, ttft_ms: float = 200.0, tokens: int = 10, input_tokens: int | None = 100,
        cached: int | None = None, max_tokens: int | None = None, dataset: int | None = None,
        error: str | None = None, reasoning: int = 0) -> RequestRecord:
    """``tokens`` chunks 20 ms apart after ``ttft_ms``; the first ``reasoning`` of them (and
    as many tokens) are reasoning, the rest the answer."""
    send = i * 10_000 * MS
    if error is not None:
        return RequestRecord(i, send, (), send + 5 * MS, 0, error=error,
                             input_tokens=input_tokens, cached_tokens=cached,
                             dataset_input_tokens=dataset, max_tokens=max_tokens,
                             reasoning_chunks=reasoning)
    chunks = tuple(send + int(ttft_ms * MS) + k * 20 * MS for k in range(tokens))
    return RequestRecord(
        i, send, chunks, chunks[-1], tokens, TokenSource.USAGE, input_tokens,
        TokenSource.USAGE, "length", max_tokens=max_tokens, cached_tokens=cached,
        dataset_input_tokens=dataset, reasoning_chunks=reasoning,
        answer_start_ns=chunks[reasoning] if reasoning else None,
        answer_end_ns=chunks[-1] if reasoning else None,
        reasoning_tokens=reasoning)


def perf(records: Sequence[RequestRecord], *, max_tokens: int = 10,
         prompts: PromptOrigin | None = None,
         shape: LoadShape | None = None) -> WindowResult:
    run = LoadRun(tuple(records), 0, max((r.end_ns for r in records), default=0), 1, 0)
    return WindowResult(SERVED.info, shape or LoadShape.closed(1), max_tokens, run,
                        prompts=prompts)


def origin(source: str, *, seed: int = 0, salt: str = "", about_caching: bool = False,
           made_in_window: int = 0, **details: Scalar) -> PromptOrigin:
    """Where a window's prompts came from; ``details`` in the order given."""
    return PromptOrigin(source, seed, salt, details, about_caching, made_in_window)


def recorded(result: WindowResult) -> RecordedWindow:
    return RecordedWindow(Provenance(NODEID, outcome="passed"), result)


def through_json(result: WindowResult) -> WindowResult:
    """The window read back from its JSON text (the report object, the result store)."""
    return WindowResult.from_json(Fields(json.loads(json.dumps(result.to_json(),
                                                               allow_nan=False))))


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the github table row that starts with ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


@pytest.fixture(autouse=True)
def quick_host_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_llmperf.report.markdown.host_facts",
                        lambda rootdir: {"host": "test"})


# --- results.window: the figures a window carries ------------------------------------------


def test_a_hit_needs_more_than_half_the_prompt_and_more_than_the_template_head() -> None:
    assert CACHE_HEAD_ALLOWANCE == 32
    records = [
        rec(0, input_tokens=100, cached=51),  # hit: 51 > max(32, 50)
        rec(1, input_tokens=100, cached=50),  # exactly half: no hit
        rec(2, input_tokens=40, cached=33),   # hit: 33 > max(32, 20)
        rec(3, input_tokens=40, cached=32),   # exactly the head allowance: no hit
        rec(4, input_tokens=40, cached=25),   # most of a short prompt, but only a head
        rec(5, input_tokens=100, cached=100, error="boom"),  # failed: not counted
        rec(6, input_tokens=100, cached=None),  # the server did not say
        rec(7, input_tokens=None, cached=90),  # no prompt count
        rec(8, input_tokens=0, cached=0),
    ]
    assert perf(records).prompt_cache == PromptCacheUse(
        requests=5, cached_tokens=191, prompt_tokens=320, hits=2, about_caching=False)
    caching = origin("shared-prefix", about_caching=True)
    assert perf(records[:1], prompts=caching).prompt_cache == PromptCacheUse(
        requests=1, cached_tokens=51, prompt_tokens=100, hits=1, about_caching=True)


def test_no_cache_figures_where_the_server_told_nothing() -> None:
    caching = origin("shared-prefix", about_caching=True)
    assert perf([]).prompt_cache is None
    assert perf([rec(0), rec(1, cached=80, error="boom"), rec(2, cached=10, input_tokens=None)],
                prompts=caching).prompt_cache is None


def test_template_overhead_is_the_least_and_most_beyond_the_exact_text() -> None:
    records = [rec(0, input_tokens=542, dataset=512), rec(1, input_tokens=158, dataset=128),
               rec(2, input_tokens=540, dataset=512), rec(3, input_tokens=900),
               rec(4, input_tokens=999, dataset=10, error="boom"),
               rec(5, input_tokens=None, dataset=64)]
    assert perf(records).template_overhead == (28, 30)
    assert perf(records[:1]).template_overhead == (30, 30)
    assert perf(records[3:]).template_overhead is None
    assert perf([]).template_overhead is None


def test_a_window_carries_the_cache_overhead_reasoning_and_short_answers() -> None:
    records = [
        # As long as it asked for, though shorter than the run's 10: not short.
        rec(0, tokens=5, max_tokens=5, input_tokens=540, dataset=512, cached=520),
        rec(1, tokens=4, max_tokens=4, input_tokens=540, dataset=512, cached=0),
        rec(2, tokens=5, input_tokens=541, dataset=512, cached=0),  # short against the run's 10
        rec(3, tokens=12, max_tokens=20, input_tokens=542, dataset=512, cached=0,
            reasoning=3),  # longer than the run's 10, short against its own 20
        rec(4, tokens=10, input_tokens=540, dataset=512, reasoning=4),
        rec(5, max_tokens=30, error="boom", reasoning=2),  # failed: neither short nor reasoned
    ]
    prompts = origin("random", about_caching=True)
    window = perf(records, prompts=prompts)
    # The same figures from the window as the JSON document carries it (they are recomputed
    # from its stored requests).
    for shown in (window, through_json(window)):
        assert shown.short_answers == 2
        assert shown.reasoning_requests == 2
        assert shown.template_overhead == (28, 30)
        assert shown.prompt_cache == PromptCacheUse(
            requests=4, cached_tokens=520, prompt_tokens=2163, hits=1, about_caching=True)
        assert shown.prompts == prompts
    assert window.to_json()["prompts"] == {"source": "random", "seed": 0, "salt": "",
                                           "about_caching": True, "made_in_window": 0}
    plain = perf([rec(0), rec(1)])
    assert (plain.short_answers, plain.reasoning_requests) == (0, 0)
    assert (plain.prompt_cache, plain.template_overhead) == (None, None)
    told = perf([rec(0, cached=80)])  # no prompts described: not about caching
    assert told.prompt_cache is not None and told.prompt_cache.about_caching is False


def cache_result(*, warm_cached: int | None = 1050) -> PrefixCacheResult:
    cold = perf([rec(i, ttft_ms=ms, input_tokens=1100, cached=20)
                 for i, ms in enumerate((380.0, 400.0, 420.0, 500.0))], max_tokens=10)
    warm = perf([rec(i, ttft_ms=ms, input_tokens=1100, cached=warm_cached)
                 for i, ms in enumerate((90.0, 100.0, 100.0, 130.0))], max_tokens=10)
    return PrefixCacheResult(cold, warm, 1024)


SUMMARY = ("TTFT 4.1x faster on the second ask: median 410 ms with nothing cached, 100 ms "
           "with each 1024-token document cached; the server served 95% of the second asks' "
           "prompt tokens from it")


def test_the_prefix_cache_gain_share_and_summary() -> None:
    result = cache_result()
    assert result.ttft_gain == pytest.approx(4.1)
    assert result.warm_cached_share == pytest.approx(1050 / 1100)
    assert result.summary() == SUMMARY
    unsaid = cache_result(warm_cached=None)
    assert unsaid.warm_cached_share is None
    assert unsaid.summary() == ("TTFT 4.1x faster on the second ask: median 410 ms with "
                                "nothing cached, 100 ms with each 1024-token document cached")


def test_no_ttft_to_compare_when_a_pass_failed() -> None:
    good = cache_result()
    failed = perf([rec(i, error="refused") for i in range(4)])
    for result in (PrefixCacheResult(failed, good.warm, 512),
                   PrefixCacheResult(good.cold, failed, 512)):
        assert result.ttft_gain is None
        assert result.summary() == "no TTFT to compare (requests failed)"


def recorded_cache(result: PrefixCacheResult,
                   nodeid: str = "t.py::test_cache[llamacpp-m]") -> RecordedPrefixCache:
    return RecordedPrefixCache(Provenance(nodeid), SERVED.info, result.gain)


def test_a_recorded_prefix_cache_has_both_passes_and_their_cached_shares() -> None:
    record = recorded_cache(cache_result())
    entry = json.loads(json.dumps(record.to_json(), allow_nan=False))
    assert (entry["kind"], entry["document_tokens"]) == ("prefix_cache", 1024)
    assert (entry["served"]["backend"], entry["served"]["model"],
            entry["served"]["engine"]) == ("llamacpp", "smollm2-135m", "xllamacpp 2026.10.1")
    assert entry["ttft_gain"] == 4.1
    assert entry["warm_cached_share"] == 0.9545
    assert entry["summary"] == SUMMARY
    cold, warm = entry["cold"], entry["warm"]
    assert (cold["label"], cold["ttft_ms_median"], cold["cache_hit_rate"]) == (
        "first ask (nothing cached)", 410.0, 0.0182)
    assert (warm["label"], warm["ttft_ms_median"], warm["cache_hit_rate"]) == (
        "second ask (document cached)", 100.0, 0.9545)
    assert (cold["load"], cold["requests"]) == (1.0, 4)
    # Read back, the record says the same.
    back = search_from_json(Fields(entry))
    assert isinstance(back, RecordedPrefixCache)
    assert (back.served, back.gain.document_tokens) == (SERVED.info, 1024)
    assert back.gain.ttft_gain == pytest.approx(4.1)
    assert back.gain.warm_cached_share == pytest.approx(0.9545)
    assert back.gain.summary == SUMMARY
    assert (back.gain.cold.label, back.gain.cold.ttft_ms_median) == (
        "first ask (nothing cached)", 410.0)
    assert back.gain.cold.cache_hit_rate == pytest.approx(0.0182)
    assert (back.gain.warm.label, back.gain.warm.ttft_ms_median) == (
        "second ask (document cached)", 100.0)
    assert cache_result(warm_cached=None).warm.metrics.scalars.get("cache_hit_rate") is None
    unsaid = recorded_cache(cache_result(warm_cached=None))
    assert unsaid.gain.warm.cache_hit_rate is None
    assert unsaid.to_json()["warm"]["cache_hit_rate"] is None  # type: ignore[index]


def prefill_sweep() -> SweepResult:
    points = (perf([rec(i, ttft_ms=ms) for i, ms in enumerate((100.0, 120.0, 200.0))]),
              perf([rec(i, ttft_ms=ms) for i, ms in enumerate((300.0, 310.0, 500.0))]))
    return SweepResult("input_tokens", points, values=(512.0, 2048.0))


def recorded_sweep(sweep: SweepResult, nodeid: str = "t.py::test_pre[x]",
                   left_out: str | None = None) -> RecordedSweep:
    return RecordedSweep(Provenance(nodeid), SERVED.info, sweep.dimension, sweep.rows, (1, 2),
                         left_out=left_out)


def test_a_prefill_sweep_row_is_placed_by_its_prompt_length() -> None:
    record = recorded_sweep(prefill_sweep())
    back = search_from_json(Fields(json.loads(json.dumps(record.to_json(), allow_nan=False))))
    assert isinstance(back, RecordedSweep)
    for sweep in (record, back):
        assert sweep.dimension == "input_tokens"
        assert [(r.load, r.label, r.ttft_ms_median) for r in sweep.rows] == [
            (512.0, "512 input tokens, 1 user", 120.0),
            (2048.0, "2048 input tokens, 1 user", 310.0)]
    plain = recorded_sweep(SweepResult("users", prefill_sweep().points))
    assert [(r.load, r.label) for r in plain.rows] == [(1.0, "1 user"), (1.0, "1 user")]


# --- report.markdown -----------------------------------------------------------------------


def test_prompts_sentence_lists_details_in_a_fixed_order() -> None:
    assert prompts_sentence(perf([rec(0)])) == ""  # no prompts described
    prompts = origin("sharegpt", seed=7, salt="ab12", passes_over_the_file=2,
                     left_out_by_length=3, path="chats.jsonl", questions=None)
    assert prompts_sentence(perf([rec(0)], prompts=prompts)) == (
        " Prompts: sharegpt (path chats.jsonl, left_out_by_length 3, passes_over_the_file 2), "
        "seed 7, salt ab12.")
    every: dict[str, Scalar] = {
        key: 1 for key in reversed(("path", "input_tokens", "output_tokens", "documents",
                                    "questions", "document_tokens", "question_tokens",
                                    "left_out_by_length", "passes_over_the_file"))}
    assert prompts_sentence(perf([rec(0)], prompts=PromptOrigin("x", 1, "s", every))) == (
        " Prompts: x (path 1, input_tokens 1, output_tokens 1, documents 1, questions 1, "
        "document_tokens 1, question_tokens 1, left_out_by_length 1, passes_over_the_file 1), "
        "seed 1, salt s.")
    assert prompts_sentence(perf([rec(0)], prompts=origin("built-in", seed=0, salt="x"))) == (
        " Prompts: built-in, seed 0, salt x.")


def test_prompts_sentence_tells_the_template_overhead_and_prompts_made_in_the_window() -> None:
    details: dict[str, Scalar] = {"output_tokens": 64, "input_tokens": 512}
    prompts = PromptOrigin("random", 0, "ab12", details)
    # The server counted 30 tokens beyond the exact 512-token text.
    thirty = perf([rec(0, input_tokens=542, dataset=512)], prompts=prompts)
    assert thirty.template_overhead == (30, 30)
    assert prompts_sentence(thirty) == (
        " Prompts: random (input_tokens 512, output_tokens 64), seed 0, salt ab12; the server "
        "counted 30 prompt tokens beyond each exact user text (its chat template).")
    made = PromptOrigin("random", 0, "ab12", details, made_in_window=5)
    spread = perf([rec(0, input_tokens=540, dataset=512), rec(1, input_tokens=543, dataset=512)],
                  prompts=made)
    assert spread.template_overhead == (28, 31)
    assert prompts_sentence(spread) == (
        " Prompts: random (input_tokens 512, output_tokens 64), seed 0, salt ab12; the server "
        "counted 28-31 prompt tokens beyond each exact user text (its chat template); 5 "
        "prompts were made inside the window (asking the tokenizer between requests).")
    none_made = perf([rec(0)], prompts=PromptOrigin("random", 0, "ab12", details,
                                                    made_in_window=0))
    assert none_made.template_overhead is None
    assert prompts_sentence(none_made) == (
        " Prompts: random (input_tokens 512, output_tokens 64), seed 0, salt ab12.")


PLAIN_CACHE_LINE = ("Prefix cache: the server served 600 of 800 prompt tokens from its cache "
                    "(75%); 3 of 4 requests took more than half their prompt (and more than a "
                    "chat template's head) from it.")


def test_cache_lines_warn_in_bold_only_for_hits_in_a_test_not_about_caching() -> None:
    assert perf([rec(0)]).prompt_cache is None
    assert cache_lines(perf([rec(0)])) == []
    # 3 of 4 requests took all their 200-token prompt from the cache, one none of it.
    hits = [rec(i, input_tokens=200, cached=200 if i < 3 else 0) for i in range(4)]
    caching = perf(hits, prompts=origin("shared-prefix", about_caching=True))
    assert caching.prompt_cache == PromptCacheUse(4, 600, 800, 3, about_caching=True)
    assert cache_lines(caching) == [PLAIN_CACHE_LINE, ""]
    flattered = perf(hits, prompts=origin("random", about_caching=False))
    assert flattered.prompt_cache == PromptCacheUse(4, 600, 800, 3, about_caching=False)
    assert cache_lines(flattered) == [
        "**Cache hits in a test not about caching: 3 of 4 requests took most of their prompt "
        "from the prefix cache, so their TTFT is flattered.** " + PLAIN_CACHE_LINE, ""]
    # 25 cached tokens of 200: only the chat template's head, no hit.
    none_hit = perf([rec(i, input_tokens=200, cached=25) for i in range(4)],
                    prompts=origin("random", about_caching=False))
    assert none_hit.prompt_cache == PromptCacheUse(4, 100, 800, 0, about_caching=False)
    assert cache_lines(none_hit) == [
        "Prefix cache: the server served 100 of 800 prompt tokens from its cache (12%); 0 of 4 "
        "requests took more than half their prompt (and more than a chat template's head) "
        "from it.", ""]


def test_the_markdown_shows_a_reasoning_window_by_its_answer(tmp_path: Path) -> None:
    records = [rec(i, reasoning=4, input_tokens=540, dataset=512, cached=520)
               for i in range(2)]
    prompts = origin("random", seed=0, salt="ab12", about_caching=False, input_tokens=512)
    text = render_markdown([recorded(perf(records, prompts=prompts))], tmp_path)
    assert ("2 answers reasoned before they answered: TTFT is their first token of any kind, "
            "time_to_answer_ms their first answer token.\n") in text
    assert (" Prompts: random (input_tokens 512), seed 0, salt ab12; the server counted 28 "
            "prompt tokens beyond each exact user text (its chat template).\n") in text
    assert ("**Cache hits in a test not about caching: 2 of 2 requests took most of their "
            "prompt from the prefix cache, so their TTFT is flattered.** ") in text
    assert table_row(text, "metric")[1:] == ["mean", "median", "p90", "p95", "p99", "min",
                                                 "max", "stdev"]
    # The first 4 of 10 tokens reasoned: the answer starts at 200 + 4 * 20 ms, ends at 380 ms.
    assert table_row(text, "ttft_ms (ms)")[1:3] == ["200", "200"]
    assert table_row(text, "time_to_answer_ms (ms)")[1:3] == ["280", "280"]
    assert table_row(text, "answer_e2el_ms (ms)")[1:3] == ["380", "380"]
    assert table_row(text, "answer_decode_tokens_per_s (tok/s)")[1:3] == ["50", "50"]
    assert table_row(text, "reasoning_tokens (tok)")[1:3] == ["4", "4"]
    assert table_row(text, "answer_tokens (tok)")[1:3] == ["6", "6"]


def test_the_markdown_of_a_plain_window_has_no_answer_rows(tmp_path: Path) -> None:
    text = render_markdown([recorded(perf([rec(0), rec(1)]))], tmp_path)
    assert "reasoned before they answered" not in text
    assert "Prefix cache:" not in text and " Prompts:" not in text
    for name in ("time_to_answer_ms (ms)", "answer_e2el_ms (ms)", "reasoning_tokens (tok)",
                 "answer_tokens (tok)", "answer_decode_tokens_per_s (tok/s)"):
        assert f"| {name}" not in text
    assert table_row(text, "ttft_ms (ms)")[1] == "200"


# --- report.terminal -----------------------------------------------------------------------


def test_terminal_cache_warning_only_for_hits_not_about_caching() -> None:
    def window(nodeid: str, records: Sequence[RequestRecord],
               about_caching: bool = False) -> RecordedWindow:
        prompts = origin("shared-prefix" if about_caching else "random",
                         about_caching=about_caching)
        return RecordedWindow(Provenance(nodeid), perf(records, prompts=prompts))

    # 6 of 8 requests took 600 of their 625 prompt tokens from the cache, 2 only 200.
    hits = [rec(i, input_tokens=625, cached=600 if i < 6 else 200) for i in range(8)]
    no_hits = [rec(i, input_tokens=625, cached=300) for i in range(8)]  # under half each
    windows = [window("t.py::test_a[x]", hits),
               window("t.py::test_b[x]", hits, about_caching=True),
               window("t.py::test_c[x]", no_hits),
               window("t.py::test_d[x]", [rec(i) for i in range(8)]),  # the server said nothing
               window("t.py::test_e[x]", [rec(i, cached=600, input_tokens=None)
                                          for i in range(8)])]  # nor counted the prompts
    assert windows[0].window.prompt_cache == PromptCacheUse(8, 4000, 5000, 6, False)
    assert windows[2].window.prompt_cache == PromptCacheUse(8, 2400, 5000, 0, False)
    assert [w.window.prompt_cache for w in windows[3:]] == [None, None]
    assert cache_warning_lines(windows) == [
        "test_a[x]: 6 of 8 requests took most of their prompt from the prefix cache: TTFT is "
        "flattered (the test is not about caching)"]


@pytest.mark.parametrize(("prompts", "label"), [
    (origin("random", input_tokens=512), "1 user, 512 tok in"),
    (origin("shared-prefix"), "1 user, shared-prefix"),
    (origin("sharegpt", path="c.jsonl"), "1 user, sharegpt"),
    (origin("built-in"), "1 user"),
    (None, "1 user"),
])
def test_the_terminal_load_names_the_prompts(prompts: PromptOrigin | None, label: str) -> None:
    table = render_terminal_table([recorded(perf([rec(0)], prompts=prompts))])
    row = table.splitlines()[2]
    assert row.split("  ")[0] == "test_x[llamacpp-smollm2-135m]"
    assert [c for c in row.split("  ") if c.strip()][1].strip() == label


def test_capacity_lines_print_a_prefix_cache_summary() -> None:
    assert capacity_lines([recorded_cache(cache_result())]) == [
        f"test_cache[llamacpp-m]: {SUMMARY}"]


# --- report.search_markdown ----------------------------------------------------------------


def test_a_prefix_cache_section_leads_with_its_summary_and_cached_share() -> None:
    lines = searches_markdown([recorded_cache(cache_result())])
    assert lines[:4] == [
        "## Prefix cache: `t.py::test_cache[llamacpp-m]`", "",
        f"smollm2-135m on llamacpp (xllamacpp 2026.10.1): **{SUMMARY}**. Each pass is a "
        "measured window of its own (full tables below).", ""]
    assert "## Capacity" not in lines
    table = lines[4]
    assert table_row(table, "load") == [
        "load", "requests", "TTFT median ms", "TTFT p95 ms", "TPOT p95 ms",
        "decode tok/s/user", "output tok/s", "req/s", "error rate", "cached share"]
    cold = table_row(table, "first ask (nothing cached)")
    warm = table_row(table, "second ask (document cached)")
    assert (cold[1], cold[2], cold[-1]) == ("4", "410", "0.0182")
    assert (warm[1], warm[2], warm[-1]) == ("4", "100", "0.955")


def test_a_prefill_sweep_section_has_the_median_ttft_and_what_was_left_out() -> None:
    entry = recorded_sweep(prefill_sweep(), "t.py::test_pre[x]",
                           left_out="8192 tokens left out: the 4096-token context holds no "
                                    "such prompt with its 64-token answer")
    lines = searches_markdown([entry])
    assert lines[:6] == [
        "## Prefill sweep: `t.py::test_pre[x]`", "",
        "smollm2-135m on llamacpp (xllamacpp 2026.10.1): each load its own warm-up and "
        "measured window (their full tables are below).", "",
        "8192 tokens left out: the 4096-token context holds no such prompt with its "
        "64-token answer.", ""]
    table = lines[6]
    assert table_row(table, "load")[:3] == ["load", "requests", "TTFT median ms"]
    assert "cached share" not in table
    assert table_row(table, "512 input tokens, 1 user")[1:3] == ["3", "120"]
    assert table_row(table, "2048 input tokens, 1 user")[1:3] == ["3", "310"]
    users = recorded_sweep(SweepResult("users", prefill_sweep().points), "t.py::test_sweep[x]")
    text = "\n".join(searches_markdown([users]))
    assert text.startswith("## Sweep: `t.py::test_sweep[x]`\n")
    assert "TTFT median ms" not in text and "left out" not in text


# --- searches.prefix_cache.cache_unavailable--------------------------------------------------


@pytest.mark.parametrize(("endpoint", "pid", "caching", "reason"), [
    (None, None, "yes", "m on transformers (t 1) keeps no prefix cache"),
    (None, 42, "no", "m on transformers (t 1) keeps no prefix cache"),
    (Endpoint("http://h/v1", "m", cache_field="cache_prompt"), 42, "no", None),
    (Endpoint("http://h/v1", "m"), 42, "no",
     "m on transformers (t 1) was launched with prefix caching off "
     "(--llmperf-prefix-caching yes turns it on)"),
    (Endpoint("http://h/v1", "m"), 42, "yes", None),
    (Endpoint("http://h/v1", "m"), None, "no", None),
])
def test_cache_unavailable_says_why(tmp_path: Path, endpoint: Endpoint | None, pid: int | None,
                                    caching: str, reason: str | None) -> None:
    served = ServedModel("transformers", "m", endpoint, engine="t 1", server_pid=pid)
    settings = resolve_settings({"prefix_caching": caching}, {}, {}, tmp_path)
    assert settings.server.prefix_caching is (caching == "yes")
    assert cache_unavailable(served, settings.server.prefix_caching) == reason


# --- searches.prefill.fitting_lengths ------------------------------------------------------


def test_fitting_lengths_leave_room_for_the_answer_and_the_template() -> None:
    assert fitting_lengths([128, 4096, 512], None, 64) == ([128, 4096, 512], [])
    # 1000 - 64 answer - 64 template margin = 872 tokens of prompt at most.
    assert fitting_lengths([2048, 128, 872, 873], 1000, 64) == ([128, 872], [2048, 873])
    assert fitting_lengths([128], 100, 16) == ([], [128])
    assert fitting_lengths([], 1000, 64) == ([], [])


# --- load.runner.planned_prompts -----------------------------------------------------------


def test_planned_prompts_for_each_way_of_sizing_a_window() -> None:
    closed, rate = LoadShape.closed(4), LoadShape.open(0.5)
    assert planned_prompts(closed, 10, None, 2) == 12
    assert planned_prompts(rate, 10, 30.0, 2) == 12  # requests win over a duration
    assert planned_prompts(rate, None, 30.0, 2) == 2 + 17  # 0.5/s * 30 s * 1.1 = 16.5
    everything = LoadShape.open(math.inf)
    assert planned_prompts(everything, None, 10.0, 0) == 10  # one "user", a request a second
    assert planned_prompts(everything, None, 2.0, 1) == 1 + 4
    assert planned_prompts(closed, None, 10.0, 1) == 1 + 40
    assert planned_prompts(closed, None, 2.5, 0) == 4 * 4  # at least 4 s' worth
    assert planned_prompts(LoadShape.closed(2), None, None, 0) == 2 * 4
    assert planned_prompts(LoadShape.closed(2), None, None, 3) == 3 + 2 * 4

"""Datasets against the real embedded engine: exact lengths as the server counts them, a
ShareGPT file through the suite with no prompt answered from the cache, and a malformed file
stopped before any server starts."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import StreamingClient
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.prompts.synthetic import Lengths, RandomPrompts
from pytest_llmperf.results.prompt_origin import PromptOrigin
from pytest_llmperf.store.documents import load_run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHAREGPT = REPO / "tests" / "data" / "sharegpt_sample.json"
# SmolLM2-Instruct's chat template around one user message: its default system prompt and the
# role markers, measured on the server (usage.prompt_tokens - the user text's tokens).
SMOLLM2_TEMPLATE_TOKENS = 30


def test_exact_length_prompts_reach_the_server_at_their_length(
        smollm2_served: ServedModel) -> None:
    assert smollm2_served.tokenizer is not None and smollm2_served.endpoint is not None
    endpoint = smollm2_served.endpoint
    lengths = (16, 100, 512, 1024)
    sources = [RandomPrompts(smollm2_served.tokenizer, input_lengths=Lengths("fixed", n),
                             output_lengths=Lengths("fixed", 2), seed=n) for n in lengths]
    prompts = [source.next_prompt() for source in sources]

    async def send() -> list[tuple[int | None, int]]:
        async with StreamingClient(endpoint, max_tokens=64) as client:
            records = [await client.send(i, prompt) for i, prompt in enumerate(prompts)]
        assert all(r.error is None for r in records), [r.error for r in records]
        return [(r.input_tokens, r.output_tokens) for r in records]

    counted = asyncio.run(send())
    wanted = list(lengths)
    # The server's own prompt count is the exact length plus the template's fixed overhead.
    assert [c[0] for c in counted] == [n + SMOLLM2_TEMPLATE_TOKENS for n in wanted]
    assert [c[1] for c in counted] == [2] * len(prompts)  # the forced answer length
    # The overhead is the template's: the server's tokenizer says the same of one prompt.
    counter = smollm2_served.token_counter
    assert counter is not None
    assert counter.count_prompt(prompts[0].text) - 16 == SMOLLM2_TEMPLATE_TOKENS


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "tests" / "perf", tmp_path / "perf")
    (tmp_path / "thresholds.toml").write_text(
        '[defaults]\nslo = ["error_rate <= 0", "ttft_ms.p95 < 60000"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def test_a_sharegpt_file_runs_the_suite_and_no_prompt_is_answered_from_the_cache(
        suite: Path) -> None:
    """With the prompt cache on, every request of both tests (warm-ups included) gets a prompt
    no earlier one had: the server reuses only the chat template's head."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_latency.py", "perf/test_concurrency.py",
         "-p", "no:cacheprovider", f"--llmperf-dataset=sharegpt:{SHAREGPT},output=4",
         "--llmperf-prefix-caching=yes", "--llmperf-requests=6", "--llmperf-warmup=1",
         "--llmperf-json=result.json", "--llmperf-report=report.md"],
        cwd=suite, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    windows = [recorded.window for recorded in load_run(suite / "result.json").windows]
    assert len(windows) == 2
    records = [r for window in windows for r in window.run.records]
    assert {w.prompts.source for w in windows if w.prompts is not None} == {"sharegpt"}
    assert all(r.output_tokens == 4 and r.max_tokens == 4 for r in records)
    cached = [r.cached_tokens or 0 for r in records]
    # A slot that served a request before reuses the chat template's head (25 tokens, and the
    # "[" that opens every tag), never more: no prompt's own text was ever cached.
    assert 0 < max(cached) <= SMOLLM2_TEMPLATE_TOKENS
    inputs = {r.input_tokens for r in records}
    assert len(inputs) > 5  # real prompts of their own lengths, not one repeated text
    report = (suite / "report.md").read_text()
    assert "Prompts: sharegpt (path " in report
    assert "Cache hits in a test not about caching" not in report
    assert "answered from the prefix cache" not in done.stdout


def test_a_malformed_dataset_file_stops_pytest_before_any_server_starts(
        suite: Path) -> None:
    bad = suite / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": 12}\n')
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "perf/test_latency.py", "-p", "no:cacheprovider",
         "--llmperf-dataset=jsonl:bad.jsonl"],
        cwd=suite, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 4, done.stdout + done.stderr  # a usage error
    assert ("--llmperf-dataset (command line): invalid value 'jsonl:bad.jsonl': bad.jsonl:2: "
            'expected "prompt" to be a string, found an integer (12)') in done.stderr
    assert not list((suite / "llmperf-output").glob("*.log"))  # no engine was launched


def test_multi_turn_chats_carry_their_history_and_reuse_its_cache(tmp_path: Path) -> None:
    """ShareGPT's multi-turn chats: each turn sends the conversation so far, so its prompt grows
    turn by turn, and with the cache on the later turns find their history cached."""
    import dataclasses

    from pytest_llmperf.engines.base import get_backend
    from pytest_llmperf.engines.catalog import builtin_catalog
    from pytest_llmperf.load.runner import run_load
    from pytest_llmperf.prompts.dataset_files import load_sharegpt
    from pytest_llmperf.prompts.files import FilePrompts
    from pytest_llmperf.settings.resolve import resolve_settings

    settings = dataclasses.replace(resolve_settings({}, {}, {}, tmp_path).server,
                                   prefix_caching=True)
    entries = load_sharegpt(SHAREGPT, multi_turn=True)
    chats = [e for e in entries if e.history and e.history[-1][0] == "assistant"]
    assert chats, "the sample has multi-turn chats"
    with get_backend("llamacpp").serve(settings, builtin_catalog().entries["smollm2-135m"],
                                       tmp_path) as served:
        # One chat after another, in order: (first turn, its second turn) pairs.
        source = FilePrompts(entries, kind="sharegpt", path=str(SHAREGPT),
                             tokenizer=served.tokenizer, output_tokens=4, multi_turn=True)
        prompts = [source.next_prompt() for _ in range(12)]
        turns = [len(p.history) // 2 for p in prompts]
        result = run_load(served, _Replay(prompts), users=1, requests=12, max_tokens=4)
    records = result.run.records
    assert all(r.ok for r in records), [r.error for r in records]
    later = [r for r, turn in zip(records, turns, strict=True) if turn > 0]
    assert later, turns
    for record, turn in zip(records, turns, strict=True):
        if turn > 0:  # the history before this turn is what the cache served
            assert record.cached_tokens is not None and record.cached_tokens > 32, record
    assert result.prompts is not None


class _Replay:
    """The prompts given, in order (made before the window, as a dataset's are)."""

    about_caching = True

    def __init__(self, prompts: list[Prompt]) -> None:
        self._prompts = list(prompts)

    def prepare(self, count: int) -> None:
        pass

    def next_prompt(self) -> Prompt:
        return self._prompts.pop(0)

    def describe(self) -> PromptOrigin:
        return PromptOrigin("replay", 0, "")

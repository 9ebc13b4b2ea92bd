"""A dataset file costs a bounded amount of memory, however large it is (issue 22, defect 11).

``--llmperf-dataset sharegpt:PATH`` (a real ShareGPT_V3 file is about 670 MB) is checked when the
plugin activates, on the pytest-xdist controller and on every worker, before any server starts.
Checking streams the file; what a process keeps is where a seeded sample of at most
``KEPT_CONVERSATIONS`` usable conversations lies in the file, and only a process whose tests
send prompts reads those back as entries.  Measured here with tracemalloc, in this process.
"""

from __future__ import annotations

import json
import os
import random
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_llmperf.prompts.dataset_spec import DatasetSpec, parse_dataset

MiB = 1 << 20
CONVERSATIONS = 24_000  # more than the cap: the sample is a real sample
# What checking a file may cost, whatever its size: a read buffer, one conversation being
# read, and the sample's positions (a few hundred KiB).
ACTIVATION_BOUND = 8 * MiB


def _sharegpt_lines(count: int) -> Iterator[str]:
    rng = random.Random(7)
    filler = "lorem ipsum dolor sit amet, ünïcödé 字 " * 20  # about 0.8 KB, not all ASCII
    for i in range(count):
        yield json.dumps({"id": f"c{i}", "conversations": [
            {"from": "human", "value": f"question {i}: {filler[:rng.randrange(200, 800)]}"},
            {"from": "gpt", "value": f"answer {i}: {filler}"}]}, ensure_ascii=False)


@pytest.fixture(scope="module")
def big_sharegpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "ShareGPT_big.json"
    with path.open("w", encoding="utf-8") as out:
        out.write("[\n" + ",\n".join(_sharegpt_lines(CONVERSATIONS)) + "\n]\n")
    return path


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "prompts_big.jsonl"
    filler = "a prompt of some length, with ünïcödé too " * 30
    with path.open("w", encoding="utf-8") as out:
        for i in range(CONVERSATIONS):
            out.write(json.dumps({"prompt": f"{i} {filler}", "output_tokens": 1 + i % 300},
                                 ensure_ascii=False) + "\n")
    return path


def peak_of(call: Callable[[], DatasetSpec]) -> tuple[DatasetSpec, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["sharegpt", "jsonl", "sharegpt-multi-turn"])
def test_activation_costs_a_bounded_amount_of_memory(kind: str, big_sharegpt: Path,
                                                     big_jsonl: Path) -> None:
    path = big_jsonl if kind == "jsonl" else big_sharegpt
    text = f"{kind.split('-')[0]}:{path}" + (",multi-turn" if "multi" in kind else "")
    size = path.stat().st_size
    assert size > 25 * MiB
    spec, peak = peak_of(lambda: parse_dataset(text))
    assert peak < ACTIVATION_BOUND, (f"checking a {size / MiB:.0f} MiB file held "
                                     f"{peak / MiB:.1f} MiB at its peak")
    # What the activated session keeps (it lives as long as the session).
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = parse_dataset(text)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < MiB, f"the activated dataset holds {held / MiB:.1f} MiB"
    assert kept == spec


@pytest.mark.parametrize("kind", ["sharegpt", "jsonl"])
def test_the_prompts_are_a_seeded_sample_of_at_most_the_cap(kind: str, big_sharegpt: Path,
                                                            big_jsonl: Path) -> None:
    from pytest_llmperf.prompts.dataset_files import KEPT_CONVERSATIONS

    path = big_jsonl if kind == "jsonl" else big_sharegpt
    spec = parse_dataset(f"{kind}:{path}")
    entries = spec.entries
    assert len(entries) == KEPT_CONVERSATIONS == 10_000
    numbers = [int(e.text.split()[0 if kind == "jsonl" else 1].rstrip(":")) for e in entries]
    assert numbers == sorted(numbers)  # in the file's order (FilePrompts shuffles by seed)
    assert len(set(numbers)) == len(numbers)
    # A sample of the whole file, not its head: each quarter of it gives about a quarter.
    quarters = [sum(n * 4 // CONVERSATIONS == q for n in numbers) for q in range(4)]
    assert all(2_000 < count < 3_000 for count in quarters), quarters
    # Seeded: the same seed keeps the same sample, another seed another one.
    assert parse_dataset(f"{kind}:{path}", seed=0).entries == entries
    other = parse_dataset(f"{kind}:{path}", seed=1).entries
    assert other != entries and len(other) == len(entries)
    unit = "prompts" if kind == "jsonl" else "conversations"
    assert spec.sample_note == f"{KEPT_CONVERSATIONS} of {CONVERSATIONS} {unit}"


def test_reading_the_sample_back_costs_the_sample_not_the_file(big_sharegpt: Path) -> None:
    spec = parse_dataset(f"sharegpt:{big_sharegpt}")
    tracemalloc.start()
    try:
        entries = spec.entries
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text_bytes = sum(len(e.text) + len(e.reference_answer or "") for e in entries)
    # The entries themselves (their text, in str's 1-2 bytes a character, and their objects).
    assert held < 4 * text_bytes + 4 * MiB
    assert peak < held + ACTIVATION_BOUND


def test_a_file_changed_after_it_was_checked_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": "two"}\n', encoding="utf-8")
    spec = parse_dataset(f"jsonl:{path}")
    assert [e.text for e in spec.entries] == ["one", "two"]
    path.write_text('{"prompt": "uno"}\n{"prompt": "dos"}\n{"prompt": "tres"}\n',
                    encoding="utf-8")
    os.utime(path, ns=(1, 1))
    with pytest.raises(ValueError, match=rf"^{path}: changed since it was checked"):
        spec.entries  # noqa: B018


def test_the_prompt_origin_says_the_file_was_sampled(big_jsonl: Path) -> None:
    from pytest_llmperf.clients.openai import Endpoint
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.prompts.sources import prompt_source

    spec = parse_dataset(f"jsonl:{big_jsonl}")
    served = ServedModel("openai", "m", Endpoint("http://127.0.0.1:1", "m"), engine="e")
    origin = prompt_source(spec, served, seed=0).describe()
    assert origin.details["sampled"] == f"10000 of {CONVERSATIONS} prompts"
    whole = big_jsonl.parent / "small.jsonl"
    whole.write_text('{"prompt": "one"}\n', encoding="utf-8")
    origin = prompt_source(parse_dataset(f"jsonl:{whole}"), served, seed=0).describe()
    assert "sampled" not in origin.details  # a file kept whole says nothing of a sample

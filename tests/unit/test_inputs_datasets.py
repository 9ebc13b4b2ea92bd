"""Dataset files and synthetic prompts of any shape end in a clear error naming path:line, never
an uncaught RecursionError or ValueError, and never a loop without end."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from pytest_llmperf.prompts.dataset_files import DatasetFileError, load_jsonl, load_sharegpt
from pytest_llmperf.prompts.dataset_spec import parse_dataset
from pytest_llmperf.prompts.synthetic import ExactLengthError, exact_text

DEEP = "[" * 200_000 + "]" * 200_000  # past any recursion limit
HUGE = "9" * 5_000  # Python's int() refuses over 4300 digits
CONVERSATION = {"conversations": [{"from": "human", "value": "hi"},
                                  {"from": "gpt", "value": "hello"}]}


def test_a_jsonl_line_nested_too_deep_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b", "x": ' + DEEP + "}\n")
    with pytest.raises(DatasetFileError, match=rf"^{path}:2:\d+: .*nested"):
        load_jsonl(path)


def test_a_jsonl_huge_integer_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b", "output_tokens": ' + HUGE + "}\n")
    with pytest.raises(DatasetFileError, match=rf'^{path}:3: expected "output_tokens" to be a '
                                               "positive integer"):
        load_jsonl(path)


def test_a_jsonl_huge_integer_in_a_key_nobody_reads_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "score": ' + HUGE + ', "n": -' + HUGE + "}\n")
    assert [entry.text for entry in load_jsonl(path)] == ["a"]


def test_a_sharegpt_file_nested_too_deep_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("[\n" + json.dumps(CONVERSATION) + ",\n  " + DEEP + "\n]\n")
    with pytest.raises(DatasetFileError, match=rf"^{path}:3:\d+: .*nested"):
        load_sharegpt(path)


def test_a_sharegpt_huge_integer_is_read_or_named(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('[{"id": ' + HUGE + ', "conversations": '
                    + json.dumps(CONVERSATION["conversations"]) + "},\n"
                    '{"id": 1, "conversations": [{"from": "human", "value": ' + HUGE + "}]}]")
    with pytest.raises(DatasetFileError, match=rf'^{path}: entry 1 \(id 1\), conversations\[0\]: '
                                               'expected "value" to be a string'):
        load_sharegpt(path)


@pytest.mark.parametrize("kind", ["jsonl", "sharegpt"])
def test_the_setting_names_the_file_and_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(DEEP if kind == "sharegpt" else '{"prompt": ' + DEEP + "}")
    with pytest.raises(ValueError, match=rf"{path}:1:\d+: "):
        parse_dataset(f"{kind}:{path}")


# --- exact_text has a cap ------------------------------------------------------------------


class StuckTokenizer:
    """Counts at most ``cap`` tokens, however long the text (a broken /tokenize)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.encodes = 0

    def encode(self, text: str) -> list[int]:
        self.encodes += 1
        return list(range(min(self.cap, len(text.split()))))

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join("w" for _ in ids)


class SlowTokenizer(StuckTokenizer):
    """One token per 1000 words: grows, but never reaches a long prompt in a sane time."""

    def encode(self, text: str) -> list[int]:
        self.encodes += 1
        return list(range(len(text.split()) // 1000))


def _bounded(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread with a generous bound: a loop without end fails the test
    instead of hanging the session."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed back to the test
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "exact_text did not stop"
    return caught[0] if caught else None


@pytest.mark.parametrize("tokenizer", [StuckTokenizer(12), SlowTokenizer(0)],
                         ids=["stuck", "slow"])
def test_exact_text_stops_with_a_clear_error_when_the_tokenizer_does_not_grow(
        tokenizer: StuckTokenizer) -> None:
    error = _bounded(lambda: exact_text(tokenizer, 4096, random.Random(0), "[head]"))
    assert isinstance(error, ExactLengthError)
    assert "4096 tokens" in str(error) and "tokenizer" in str(error)
    assert tokenizer.encodes <= 40


# --- lengths no prompt can have --------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "random:input=" + HUGE, "random:input=99999999999", "random:input=512,output=1..99999999999",
    "random:input=512~" + HUGE, "random:D(" + HUGE + ",64)", "random:U(50,100)/(1,99999999999)",
    "shared-prefix:documents=" + "9" * 30, "shared-prefix:document=" + HUGE,
    "jsonl:x.jsonl,max-input=" + HUGE,
])
def test_a_length_beyond_any_context_is_refused_naming_the_limit(text: str) -> None:
    """A 40-digit prompt length would have exact_text build a text of that many words."""
    with pytest.raises(ValueError, match="at most 10000000"):
        parse_dataset(text)


@pytest.mark.parametrize("text", ["random:input=²", "shared-prefix:documents=²",
                                  "random:input=٣٢"])
def test_a_digit_python_will_not_read_is_named(text: str) -> None:
    """str.isdigit() takes '²', int() does not: the error names the setting, not int()."""
    with pytest.raises(ValueError, match=r"^(random input|documents): expected a whole number"):
        parse_dataset(text)

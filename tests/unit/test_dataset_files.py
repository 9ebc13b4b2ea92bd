"""Dataset files: the shipped ShareGPT and JSONL samples load as expected, and every problem in a
file is an error naming the file, the position and what was expected."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.prompts.dataset_files import (
    DatasetEntry,
    DatasetFileError,
    DatasetSummary,
    load_jsonl,
    load_sharegpt,
    read_sharegpt,
)

DATA = Path(__file__).parent.parent / "data"
SHAREGPT = DATA / "sharegpt_sample.json"
JSONL = DATA / "prompts_sample.jsonl"

Loader = Callable[[Path], tuple[DatasetEntry, ...]]
LOADERS = [pytest.param(load_sharegpt, id="sharegpt"), pytest.param(load_jsonl, id="jsonl")]

SKIPPED = {"starting with a reply": 1, "with fewer than 2 turns": 1, "with an empty turn": 1}


def cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def write_sharegpt(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def conversation(*turns: tuple[str, str], ident: str = "c") -> dict[str, Any]:
    return {"id": ident, "conversations": [{"from": f, "value": v} for f, v in turns]}


GOOD = conversation(("human", "hello"), ("gpt", "hi there"), ident="good")


def sharegpt_error(tmp_path: Path, data: Any) -> str:
    path = write_sharegpt(tmp_path, data)
    with pytest.raises(DatasetFileError) as info:
        load_sharegpt(path)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    return message


def jsonl_error(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetFileError) as info:
        load_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{len(lines)}:"), message  # the bad line is the last
    return message


# ---- the shipped ShareGPT sample ----------------------------------------------------------


def test_sharegpt_sample_gives_each_usable_conversations_first_exchange() -> None:
    entries, summary = read_sharegpt(SHAREGPT)
    assert summary == DatasetSummary(conversations=40, entries=37,
                                     skipped=tuple(SKIPPED.items()))
    assert entries == load_sharegpt(SHAREGPT)
    first = entries[0]
    assert first.text == "What is the difference between a process and a thread?"
    assert first.reference_answer is not None
    assert first.reference_answer.startswith("A process is an independent program")
    assert (first.history, first.output_tokens, first.where) == ((), None, f"{SHAREGPT}: entry 0")
    texts = [e.text for e in entries]
    # The skipped ones: a reply first, a lone turn, an empty one.
    assert not any(t.startswith(("Sure, here is the rest", "Give me a list of 10")) for t in texts)
    assert all(t.strip() and e.reference_answer for t, e in zip(texts, entries, strict=True))
    assert sum(cjk(t) for t in texts) == 4
    # The where of entries after the skipped conversations still counts the file's array.
    assert entries[31].where == f"{SHAREGPT}: entry 34"
    assert sum(len(t.split()) >= 100 for t in texts) >= 5  # long prompts too


def test_sharegpt_first_exchange_keeps_the_turns_before_it() -> None:
    entries = load_sharegpt(SHAREGPT)
    system = entries[30]  # a system turn, then two exchanges
    assert system.history == (("system", "You are a concise assistant that answers in at most "
                                         "two sentences."),)
    assert system.text == "What is photosynthesis?"
    context = entries[29]  # two human turns in a row: the answered one is the request
    assert context.text.startswith("Write a one-sentence Instagram caption")
    assert context.history == (("user", "Here is some context: our company sells handmade "
                                        "ceramic mugs online."),)


def test_sharegpt_multi_turn_gives_every_answered_turn_in_order() -> None:
    entries, summary = read_sharegpt(SHAREGPT, multi_turn=True)
    assert (len(entries), summary.entries, summary.conversations) == (49, 49, 40)
    bash = [e for e in entries if e.where.startswith(f"{SHAREGPT}: entry 22,")]
    assert [e.where for e in bash] == [f"{SHAREGPT}: entry 22, conversations[{i}]"
                                       for i in (0, 2, 4)]
    assert [e.text for e in bash] == [
        "write a bash one-liner that counts the lines in all .py files in a directory",
        "can it skip the venv folder?", "and only print the total"]
    assert [len(e.history) for e in bash] == [0, 2, 4]
    assert [role for role, _ in bash[2].history] == ["user", "assistant", "user", "assistant"]
    assert bash[2].history[:2] == (("user", bash[0].text), ("assistant", bash[0].reference_answer))
    assert bash[2].history[2:] == (("user", bash[1].text), ("assistant", bash[1].reference_answer))
    assert bash[2].reference_answer is not None and "| wc -l" in bash[2].reference_answer


def test_sharegpt_multi_turn_maps_every_speaker_to_a_chat_role() -> None:
    entries = load_sharegpt(SHAREGPT, multi_turn=True)
    by_where = {e.where.rsplit(": ", 1)[1]: e for e in entries}
    canberra = by_where["entry 28, conversations[2]"]  # the assistant is "chatgpt"
    assert canberra.text == "When did parliament move there?"
    assert [role for role, _ in canberra.history] == ["user", "assistant"]
    assert canberra.reference_answer is not None
    assert canberra.reference_answer.startswith("Parliament first sat")
    respiration = by_where["entry 30, conversations[3]"]
    assert [role for role, _ in respiration.history] == ["system", "user", "assistant"]
    roles = {role for e in entries for role, _ in e.history}
    assert roles == {"system", "user", "assistant"}


def test_sharegpt_single_turn_entries_are_each_conversations_first_multi_turn_entry() -> None:
    single = load_sharegpt(SHAREGPT)
    firsts: dict[str, DatasetEntry] = {}
    for entry in load_sharegpt(SHAREGPT, multi_turn=True):
        firsts.setdefault(entry.where.split(",")[0], entry)
    assert [dataclasses.replace(e, where=e.where.split(",")[0]) for e in firsts.values()] == list(
        single)


def test_entries_are_immutable() -> None:
    entry = load_sharegpt(SHAREGPT, multi_turn=True)[-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.text = "changed"  # type: ignore[misc]
    assert isinstance(entry.history, tuple)


def test_summary_describes_the_skipped_conversations() -> None:
    _, summary = read_sharegpt(SHAREGPT)
    assert summary.skipped_total == 3
    assert summary.describe() == ("37 entries from 40 conversations; skipped 3: 1 starting with "
                                  "a reply, 1 with fewer than 2 turns, 1 with an empty turn")
    assert DatasetSummary(2, 2).describe() == "2 entries from 2 conversations"


# ---- ShareGPT skipping rules -----------------------------------------------------------------


def test_sharegpt_skips_and_counts_unusable_conversations(tmp_path: Path) -> None:
    path = write_sharegpt(tmp_path, [
        GOOD,
        conversation(("gpt", "I start"), ("human", "q"), ("gpt", "a")),
        conversation(("system", "be brief"), ("gpt", "I start too"), ("human", "q")),
        conversation(("human", "alone")),
        {"conversations": []},
        conversation(("human", "   "), ("gpt", "blank question")),
        conversation(("human", "q"), ("gpt", "\n")),
        conversation(("human", "q"), ("tool", "42"), ("gpt", "a")),
        conversation(("human", "q"), ("human", "q again")),
    ])
    entries, summary = read_sharegpt(path)
    assert [e.text for e in entries] == ["hello"]
    assert dict(summary.skipped) == {
        "starting with a reply": 2, "with fewer than 2 turns": 2, "with an empty turn": 2,
        'with an unknown speaker "tool"': 1, "without a human turn followed by a reply": 1}
    assert summary.skipped_total == 8 and summary.conversations == 9


def test_sharegpt_an_unusable_turn_ends_a_conversations_entries(tmp_path: Path) -> None:
    path = write_sharegpt(tmp_path, [conversation(
        ("human", "one"), ("gpt", "1"), ("human", "two"), ("bard", "2"), ("human", ""),
        ("gpt", "?"), ("human", "three"), ("gpt", "3"))])
    entries = load_sharegpt(path, multi_turn=True)
    assert [(e.text, e.reference_answer) for e in entries] == [("one", "1"), ("two", "2")]
    assert entries[1].history == (("user", "one"), ("assistant", "1"))


def test_sharegpt_reads_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([GOOD]).encode())
    assert [e.text for e in load_sharegpt(path)] == ["hello"]


# ---- ShareGPT errors -------------------------------------------------------------------------


def test_sharegpt_invalid_json_names_line_column_and_character(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    text = '[\n  {"id": "a",\n    "conversations": [}\n]'
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetFileError) as info:
        load_sharegpt(path)
    assert text.index("}") == 38 and text.splitlines()[2].index("}") == 22
    assert str(info.value) == f"{path}:3:23 (char 38): not valid JSON: Expecting value"


@pytest.mark.parametrize(("data", "expected"), [
    ({"conversations": []}, ": expected a JSON array of conversations at the top level, "
                            "found an object"),
    ("[]", ': expected a JSON array of conversations at the top level, found a string ("[]")'),
])
def test_sharegpt_top_level_must_be_an_array(tmp_path: Path, data: Any, expected: str) -> None:
    path = write_sharegpt(tmp_path, data)
    assert sharegpt_error(tmp_path, data) == f"{path}{expected}"


@pytest.mark.parametrize(("item", "expected"), [
    ("hello", 'entry 1: expected an object with a "conversations" list, found a string '
              '("hello")'),
    ([1, 2], 'entry 1: expected an object with a "conversations" list, found an array (2 '
             'items)'),
    ({"id": "abc"}, 'entry 1 (id "abc"): expected a "conversations" list, found no '
                    '"conversations" key'),
    ({"id": 7, "conversations": "hi"}, 'entry 1 (id 7): expected "conversations" to be a list, '
                                       'found a string ("hi")'),
    ({"conversations": {"from": "human"}}, 'entry 1: expected "conversations" to be a list, '
                                           "found an object"),
    ({"id": "t", "conversations": [{"from": "human", "value": "q"}, "hi"]},
     'entry 1 (id "t"), conversations[1]: expected an object with string "from" and "value", '
     'found a string ("hi")'),
    ({"id": "t", "conversations": [{"value": "q"}]},
     'entry 1 (id "t"), conversations[0]: expected a string "from", found no "from" key'),
    ({"id": "t", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt"}]},
     'entry 1 (id "t"), conversations[1]: expected a string "value", found no "value" key'),
    ({"id": "t", "conversations": [{"from": "human", "value": None}]},
     'entry 1 (id "t"), conversations[0]: expected "value" to be a string, found null'),
    ({"id": "t", "conversations": [{"from": 1, "value": "q"}]},
     'entry 1 (id "t"), conversations[0]: expected "from" to be a string, found an integer (1)'),
])
def test_sharegpt_bad_entry_names_its_index_id_and_turn(
        tmp_path: Path, item: Any, expected: str) -> None:
    path = write_sharegpt(tmp_path, [GOOD, item])
    assert sharegpt_error(tmp_path, [GOOD, item]) == f"{path}: {expected}"


def test_sharegpt_checks_every_turn_even_of_skipped_conversations(tmp_path: Path) -> None:
    data = [GOOD] * 5 + [{"id": "x", "conversations": [{"from": "human", "value": ["q"]}]}]
    message = sharegpt_error(tmp_path, data)
    assert message.endswith('entry 5 (id "x"), conversations[0]: expected "value" to be a '
                            "string, found an array (1 item)")


def test_sharegpt_without_a_usable_conversation_says_what_it_skipped(tmp_path: Path) -> None:
    path = write_sharegpt(tmp_path, [conversation(("gpt", "hi")), conversation(("human", "q"))])
    assert sharegpt_error(tmp_path, [conversation(("gpt", "hi")), conversation(("human", "q"))]
                          ) == (f"{path}: no conversation with a human turn followed by a reply "
                                "(found 0 entries from 2 conversations; skipped 2: 2 with fewer "
                                "than 2 turns)")
    assert sharegpt_error(tmp_path, []) == (
        f"{path}: no conversation with a human turn followed by a reply (found an empty array)")


# ---- the shipped JSONL sample ------------------------------------------------------------------


def test_jsonl_sample_gives_one_entry_per_line() -> None:
    entries = load_jsonl(JSONL)
    assert len(entries) == 30
    assert entries[0] == DatasetEntry(
        text="Explain the difference between TCP and UDP in three sentences.",
        where=f"{JSONL}:1")
    assert entries[1].output_tokens == 64 and entries[1].history == ()
    lengths = [e.output_tokens for e in entries if e.output_tokens is not None]
    assert lengths == [64, 150, 256, 200, 300, 32, 40, 400, 180, 220]
    assert [e.where for e in entries[11:13]] == [f"{JSONL}:12", f"{JSONL}:14"]  # 13 is blank
    assert entries[9].text.startswith("What are the main causes of inflation")  # "id" ignored
    assert all(e.reference_answer is None for e in entries)
    assert sum(cjk(e.text) for e in entries) == 2


def test_jsonl_sample_chats_become_history_and_the_last_user_message() -> None:
    entries = load_jsonl(JSONL)
    chats = [e for e in entries if e.history]
    assert [e.where for e in chats] == [f"{JSONL}:{n}" for n in (6, 9, 14, 17, 25, 29)]
    cooking = chats[3]
    assert cooking.text == "Can I make it in one pot?"
    assert [role for role, _ in cooking.history] == ["user", "assistant", "user", "assistant"]
    assert cooking.history[0][1].startswith("I have chicken, rice")
    assert cooking.history[-1] == ("assistant", "About 35 minutes, most of it for the rice.")
    assert chats[0].history == (("system", "You answer like a patient maths tutor."),)
    hash_table = entries[3]  # a chat of one user message
    assert (hash_table.text, hash_table.history) == ("What is a hash table?", ())


def test_jsonl_lines_end_only_at_newlines(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    raw = json.dumps({"prompt": "one\u2028two"}, ensure_ascii=False)
    path.write_bytes(b"\r\n" + raw.encode() + b"\r\n\r\n" + b'{"prompt": "x", '
                     b'"output_tokens": null}')
    entries = load_jsonl(path)
    assert [(e.text, e.where, e.output_tokens) for e in entries] == [
        ("one\u2028two", f"{path}:2", None), ("x", f"{path}:4", None)]


# ---- JSONL errors --------------------------------------------------------------------------


def test_jsonl_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    message = jsonl_error(tmp_path, '{"prompt": "fine"}', "", '{"prompt": "a",}')
    assert message.endswith(
        ".jsonl:3:16: not valid JSON: Expecting property name enclosed in double quotes")


BAD_LINES = [
    ('["a"]', "expected a JSON object, found an array (1 item)"),
    ('"just text"', 'expected a JSON object, found a string ("just text")'),
    ('{"text": "hi", "n": 1}',
     'expected a "prompt" string or a "messages" list, found neither (keys: "text", "n")'),
    ("{}", 'expected a "prompt" string or a "messages" list, found neither (keys: none)'),
    ('{"prompt": "a", "messages": []}', 'expected either "prompt" or "messages", found both'),
    ('{"prompt": 5}', 'expected "prompt" to be a string, found an integer (5)'),
    ('{"prompt": ["a"]}', 'expected "prompt" to be a string, found an array (1 item)'),
    ('{"prompt": ""}', 'expected a non-empty "prompt", found an empty string ("")'),
    ('{"prompt": " \\n "}', 'expected a non-empty "prompt", found an empty string (" \\n ")'),
    ('{"messages": "hi"}',
     'expected "messages" to be a list of {"role", "content"} objects, found a string ("hi")'),
    ('{"messages": []}', 'expected "messages" to hold at least one message, found an empty list'),
    ('{"messages": ["hi"]}', 'messages[0]: expected an object with string "role" and '
                             '"content", found a string ("hi")'),
    ('{"messages": [{"content": "q"}]}',
     'messages[0]: expected a string "role", found no "role" key'),
    ('{"messages": [{"role": "user"}]}',
     'messages[0]: expected a string "content", found no "content" key'),
    ('{"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]}',
     'messages[0]: expected "content" to be a string, found an array (1 item)'),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}',
     'messages[1]: expected "role" to be one of "system", "user", "assistant", found a string '
     '("bot")'),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
     'messages[1]: expected the last message to be from "user", found "assistant"'),
    ('{"messages": [{"role": "system", "content": "be brief"}]}',
     'messages[0]: expected the last message to be from "user", found "system"'),
    ('{"messages": [{"role": "user", "content": "  "}]}',
     'messages[0]: expected a non-empty "content" (the prompt), found an empty string ("  ")'),
    ('{"prompt": "q", "output_tokens": 0}',
     'expected "output_tokens" to be a positive integer, found an integer (0)'),
    ('{"prompt": "q", "output_tokens": -3}',
     'expected "output_tokens" to be a positive integer, found an integer (-3)'),
    ('{"prompt": "q", "output_tokens": true}',
     'expected "output_tokens" to be a positive integer, found a boolean (true)'),
    ('{"prompt": "q", "output_tokens": "12"}',
     'expected "output_tokens" to be a positive integer, found a string ("12")'),
    ('{"prompt": "q", "output_tokens": 12.0}',
     'expected "output_tokens" to be a positive integer, found a number (12.0)'),
]


@pytest.mark.parametrize(("line", "expected"), BAD_LINES)
def test_jsonl_bad_line_names_its_line_the_key_and_what_was_expected(
        tmp_path: Path, line: str, expected: str) -> None:
    message = jsonl_error(tmp_path, '{"prompt": "fine"}', "   ", line)
    assert message == f"{tmp_path / 'prompts.jsonl'}:3: {expected}"


@pytest.mark.parametrize(("content", "found"), [("", "an empty file"),
                                                ("\n  \n\t\n", "only blank lines")])
def test_jsonl_without_prompts_is_an_error(tmp_path: Path, content: str, found: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetFileError) as info:
        load_jsonl(path)
    assert str(info.value) == (f"{path}:1: no prompts: expected one JSON object per line, "
                               f"found {found}")


def test_jsonl_long_strings_are_shortened_in_messages(tmp_path: Path) -> None:
    message = jsonl_error(tmp_path, json.dumps({"prompt": "q", "output_tokens": "x" * 500}))
    assert message.endswith(f'found a string ("{"x" * 37}...")')


# ---- errors of the file itself, for both loaders -------------------------------------------


@pytest.mark.parametrize("load", LOADERS)
def test_a_missing_file_is_an_error(tmp_path: Path, load: Loader) -> None:
    path = tmp_path / "nowhere" / "data.json"
    with pytest.raises(DatasetFileError, match=f"^{re.escape(str(path))}: no such file$"):
        load(path)


@pytest.mark.parametrize("load", LOADERS)
def test_a_directory_is_an_error(tmp_path: Path, load: Loader) -> None:
    with pytest.raises(DatasetFileError) as info:
        load(tmp_path)
    assert str(info.value) == f"{tmp_path}: expected a dataset file, found a directory"


@pytest.mark.parametrize("load", LOADERS)
def test_an_unreadable_file_is_an_error(tmp_path: Path, load: Loader,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.json"
    path.write_text("[]", encoding="utf-8")

    def refuse(self: Path, *args: object, **kwargs: object) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    # Tests may run as root, for whom chmod 000 does not stop a read.
    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DatasetFileError) as info:
        load(path)
    assert str(info.value) == f"{path}: cannot be read: Permission denied"


@pytest.mark.parametrize("load", LOADERS)
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_invalid_utf8_names_the_byte_and_its_line(tmp_path: Path, load: Loader,
                                                  bom: bytes) -> None:
    path = tmp_path / "latin1.jsonl"
    data = bom + b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n'
    path.write_bytes(data)
    with pytest.raises(DatasetFileError) as info:
        load(path)
    offset = data.index(b"\xe9")
    assert str(info.value) == (f"{path}:2: not valid UTF-8: byte {offset} (0xe9): invalid "
                               "continuation byte; expected a UTF-8 text file")

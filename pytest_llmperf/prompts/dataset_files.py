"""The user's dataset files: ShareGPT conversations and JSONL prompts, checked in full, sampled.

They are checked while pytest configures, before any server starts, so every problem is a
:class:`DatasetFileError` naming the file, the position (``path:line:column`` for JSON syntax
and JSONL; ``path: entry N`` for ShareGPT's array, N counted from 0 like jq's ``.[N]``), what
was expected and what was found.  Nothing is downloaded: the user names a file that is there.

A real ShareGPT file is 670 MB and every pytest-xdist worker checks it, so none holds it whole:
the file is read in pieces (prompts.json_stream), and what a check keeps is where a seeded
sample of at most :data:`KEPT_CONVERSATIONS` usable conversations (JSONL: lines) lies in the
file, in the file's order.  :meth:`CheckedFile.entries` reads those back as immutable entries,
in the processes that send prompts; a file changed since its check is an error then.
"""

from __future__ import annotations

import json
import os
import random
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_llmperf.clients.base import Turn
from pytest_llmperf.prompts.json_stream import (
    DatasetFileError,
    Item,
    NotAnArray,
    open_dataset,
    read_array,
    read_lines,
)
from pytest_llmperf.prompts.json_text import loads

__all__ = ["CHAT_ROLES", "KEPT_CONVERSATIONS", "SHAREGPT_ROLES", "CheckedFile", "DatasetEntry",
           "DatasetFileError", "DatasetSummary", "check_jsonl", "check_sharegpt", "load_jsonl",
           "load_sharegpt", "read_sharegpt"]

CHAT_ROLES = ("system", "user", "assistant")
# The most conversations (JSONL: lines) a run draws its prompts from: far more than a run
# sends (each window sends tens to thousands), few enough to hold as entries in every process.
KEPT_CONVERSATIONS = 10_000

# ShareGPT's speakers by the chat role they play; dumps of other chatbots name their assistant,
# and ShareGPT-style files made by other tools use the chat roles themselves.
SHAREGPT_ROLES: dict[str, str] = {
    "human": "user", "user": "user",
    "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "assistant": "assistant",
    "system": "system",
}


@dataclass(frozen=True)
class DatasetEntry:
    """One request a dataset file gives.

    ``text`` is the user's message it sends (the newest user turn), ``history`` the turns before
    it, oldest first.  ``reference_answer`` is the dataset's own reply to ``text`` (ShareGPT's
    gpt turn), for answer lengths like the dataset's; ``output_tokens`` an answer length the
    file states (JSONL).  ``where`` is "path:line" or "path: entry N", for messages.
    """

    text: str
    history: tuple[Turn, ...] = ()
    reference_answer: str | None = None
    output_tokens: int | None = None
    where: str = ""


@dataclass(frozen=True)
class DatasetSummary:
    """What a ShareGPT file held: its conversations, the entries made and the ones skipped.

    ``skipped`` pairs a reason with how many conversations it skipped, most common first.
    """

    conversations: int
    entries: int
    skipped: tuple[tuple[str, int], ...] = ()

    @property
    def skipped_total(self) -> int:
        return sum(n for _, n in self.skipped)

    def describe(self) -> str:
        text = f"{self.entries} entries from {self.conversations} conversations"
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped)
            text += f"; skipped {self.skipped_total}: {reasons}"
        return text


@dataclass(frozen=True)
class CheckedFile:
    """A dataset file checked to its end, and where the kept sample lies in it.

    ``numbers`` (ShareGPT: the array index; JSONL: the line), ``starts`` and ``ends`` (byte
    offsets) describe each kept conversation or line, in the file's order; ``usable`` counts
    all of the file's; ``stamp`` is the file's (size, mtime) when it was checked.
    """

    path: Path
    kind: Literal["sharegpt", "jsonl"]
    multi_turn: bool
    numbers: array[int]
    starts: array[int]
    ends: array[int]
    usable: int
    summary: DatasetSummary
    stamp: tuple[int, int]

    @property
    def sample_note(self) -> str | None:
        """``10000 of 94145 conversations`` when the file held more than was kept."""
        if len(self.numbers) == self.usable:
            return None
        unit = "conversations" if self.kind == "sharegpt" else "prompts"
        return f"{len(self.numbers)} of {self.usable} {unit}"

    def entries(self) -> tuple[DatasetEntry, ...]:
        """The kept sample's entries, read back from the file (it is read each call)."""
        if _stamp(self.path) != self.stamp:
            raise self._changed("its size or modification time differs")
        entries: list[DatasetEntry] = []
        with open_dataset(self.path) as stream:
            for number, start, end in zip(self.numbers, self.starts, self.ends, strict=True):
                try:
                    stream.seek(start)
                    value = loads(stream.read(end - start).decode("utf-8"))
                except (OSError, ValueError, RecursionError) as e:
                    raise self._changed(f"{type(e).__name__} reading it again") from None
                made = self._entries_of(number, value)
                if isinstance(made, str):
                    raise self._changed(f"a conversation checked as usable is not: {made}")
                entries.extend(made)
        return tuple(entries)

    def _entries_of(self, number: int, value: object) -> list[DatasetEntry] | str:
        if self.kind == "jsonl":
            return [_jsonl_entry(value, f"{self.path}:{number}")]
        where = f"{self.path}: entry {number}"
        return _conversation_entries(_sharegpt_turns(value, where), where, self.multi_turn)

    def _changed(self, why: str) -> DatasetFileError:
        return DatasetFileError(f"{self.path}: changed since it was checked ({why}); the run "
                                "reads its prompts back from the file, so leave it be")


class _Sample:
    """A seeded reservoir of at most ``keep`` spans (algorithm R): every usable item of the
    file has the same chance to be kept, whatever its place."""

    def __init__(self, keep: int | None, seed: int) -> None:
        self.keep, self.rng = keep, random.Random(seed)
        self.numbers, self.starts, self.ends = array("q"), array("q"), array("q")
        self.seen = 0

    def offer(self, item: Item) -> None:
        self.seen += 1
        if self.keep is None or len(self.numbers) < self.keep:
            self.numbers.append(item.number)
            self.starts.append(item.start)
            self.ends.append(item.end)
            return
        slot = self.rng.randrange(self.seen)
        if slot < self.keep:
            self.numbers[slot], self.starts[slot], self.ends[slot] = (
                item.number, item.start, item.end)

    def in_file_order(self) -> tuple[array[int], array[int], array[int]]:
        order = sorted(range(len(self.numbers)), key=self.starts.__getitem__)
        return tuple(array("q", (column[i] for i in order))  # type: ignore[return-value]
                     for column in (self.numbers, self.starts, self.ends))


def _stamp(path: Path) -> tuple[int, int]:
    """The file's (size, mtime); opened, so that what cannot be read says so now."""
    with open_dataset(path) as stream:
        status = os.fstat(stream.fileno())
    return status.st_size, status.st_mtime_ns


def check_sharegpt(path: Path, *, multi_turn: bool = False, seed: int = 0,
                   keep: int | None = KEPT_CONVERSATIONS) -> CheckedFile:
    """Check a ShareGPT file (``ShareGPT_V3_unfiltered_cleaned_split.json``'s format) to its
    last conversation and sample ``keep`` usable ones (None: all).

    Each conversation gives its first user turn that a reply follows, with that reply as the
    reference answer and any turns before it (a system turn) as history; with ``multi_turn``,
    one entry per such turn, in order, each with every earlier turn as its history.
    Conversations with fewer than 2 turns, starting with a reply, or with an empty or unknown
    turn before any usable one are skipped (the summary counts them).
    """
    stamp = _stamp(path)
    sample = _Sample(keep, seed)
    skipped: Counter[str] = Counter()
    conversations = made_entries = 0
    try:
        for item in read_array(path):
            conversations += 1
            where = f"{path}: entry {item.number}"
            made = _conversation_entries(_sharegpt_turns(item.value, where), where, multi_turn)
            if isinstance(made, str):
                skipped[made] += 1
            else:
                made_entries += len(made)
                sample.offer(item)
    except NotAnArray as top:
        raise DatasetFileError(f"{path}: expected a JSON array of conversations at the top "
                               f"level, found {_found(top.value)}") from None
    summary = DatasetSummary(conversations, made_entries, tuple(skipped.most_common()))
    if not made_entries:
        found = f"found {summary.describe()}" if conversations else "found an empty array"
        raise DatasetFileError(
            f"{path}: no conversation with a human turn followed by a reply ({found})")
    return CheckedFile(path, "sharegpt", multi_turn, *sample.in_file_order(), sample.seen,
                       summary, stamp)


def check_jsonl(path: Path, *, seed: int = 0,
                keep: int | None = KEPT_CONVERSATIONS) -> CheckedFile:
    """Check a JSONL file to its last line and sample ``keep`` of its prompts (None: all).

    Each line is an object with a ``"prompt"`` string or a chat's ``"messages"``
    (``{"role", "content"}`` objects, the last one the user's; the earlier ones become the
    history), and optionally ``"output_tokens"``, a positive integer (null: not given).  Other
    keys are ignored; blank lines too.
    """
    stamp = _stamp(path)
    sample = _Sample(keep, seed)
    for item in read_lines(path):
        _jsonl_entry(item.value, f"{path}:{item.number}")
        sample.offer(item)
    summary = DatasetSummary(sample.seen, sample.seen)
    return CheckedFile(path, "jsonl", False, *sample.in_file_order(), sample.seen, summary,
                       stamp)


def load_sharegpt(path: Path, *, multi_turn: bool = False) -> tuple[DatasetEntry, ...]:
    """Every entry of a ShareGPT file (:func:`check_sharegpt`, nothing left out)."""
    return read_sharegpt(path, multi_turn=multi_turn)[0]


def read_sharegpt(path: Path, *, multi_turn: bool = False
                  ) -> tuple[tuple[DatasetEntry, ...], DatasetSummary]:
    """:func:`load_sharegpt`'s entries and what it skipped."""
    checked = check_sharegpt(path, multi_turn=multi_turn, keep=None)
    return checked.entries(), checked.summary


def load_jsonl(path: Path) -> tuple[DatasetEntry, ...]:
    """Every entry of a JSONL file (:func:`check_jsonl`, nothing left out)."""
    return check_jsonl(path, keep=None).entries()


def _sharegpt_turns(item: object, where: str) -> list[tuple[str, str]]:
    """One conversation's (speaker, value) turns, every one checked."""
    if not isinstance(item, dict):
        raise DatasetFileError(
            f'{where}: expected an object with a "conversations" list, found {_found(item)}')
    ident = item.get("id")
    if isinstance(ident, (str, int)) and not isinstance(ident, bool):
        where += f" (id {json.dumps(ident, ensure_ascii=False)})"
    if "conversations" not in item:
        raise DatasetFileError(
            f'{where}: expected a "conversations" list, found no "conversations" key')
    conversation = item["conversations"]
    if not isinstance(conversation, list):
        raise DatasetFileError(
            f'{where}: expected "conversations" to be a list, found {_found(conversation)}')
    turns: list[tuple[str, str]] = []
    for i, turn in enumerate(conversation):
        at = f"{where}, conversations[{i}]"
        if not isinstance(turn, dict):
            raise DatasetFileError(f'{at}: expected an object with string "from" and "value", '
                                   f"found {_found(turn)}")
        turns.append((_string(turn, "from", at), _string(turn, "value", at)))
    return turns


def _conversation_entries(turns: list[tuple[str, str]], where: str, multi_turn: bool
                          ) -> list[DatasetEntry] | str:
    """The entries of one conversation, or why it gives none."""
    if len(turns) < 2:
        return "with fewer than 2 turns"
    roles = [SHAREGPT_ROLES.get(speaker) for speaker, _ in turns]
    if next((role for role in roles if role != "system"), None) == "assistant":
        return "starting with a reply"
    # A turn that cannot be sent ends what is usable: a later entry's history would have a hole.
    end, cut = len(turns), ""
    for i, ((speaker, value), role) in enumerate(zip(turns, roles, strict=True)):
        if role is None or not value.strip():
            end = i
            cut = (f"with an unknown speaker {json.dumps(speaker)}" if role is None
                   else "with an empty turn")
            break
    entries: list[DatasetEntry] = []
    for i in range(end - 1):
        if roles[i] != "user" or roles[i + 1] != "assistant":
            continue
        history = tuple((str(roles[j]), turns[j][1]) for j in range(i))
        entries.append(DatasetEntry(
            text=turns[i][1], history=history, reference_answer=turns[i + 1][1],
            where=f"{where}, conversations[{i}]" if multi_turn else where))
        if not multi_turn:
            break
    return entries or cut or "without a human turn followed by a reply"


def _jsonl_entry(obj: object, where: str) -> DatasetEntry:
    if not isinstance(obj, dict):
        raise DatasetFileError(f"{where}: expected a JSON object, found {_found(obj)}")
    if "prompt" in obj and "messages" in obj:
        raise DatasetFileError(f'{where}: expected either "prompt" or "messages", found both')
    history: tuple[Turn, ...] = ()
    if "prompt" in obj:
        text = obj["prompt"]
        if not isinstance(text, str):
            raise DatasetFileError(
                f'{where}: expected "prompt" to be a string, found {_found(text)}')
        if not text.strip():
            raise DatasetFileError(
                f'{where}: expected a non-empty "prompt", found {_found(text)}')
    elif "messages" in obj:
        text, history = _messages(obj["messages"], where)
    else:
        keys = ", ".join(json.dumps(k, ensure_ascii=False) for k in obj) or "none"
        raise DatasetFileError(f'{where}: expected a "prompt" string or a "messages" list, '
                               f"found neither (keys: {keys})")
    output_tokens = obj.get("output_tokens")
    # bool is an int to Python, never an answer length to a user.
    if output_tokens is not None and (isinstance(output_tokens, bool)
                                      or not isinstance(output_tokens, int) or output_tokens < 1):
        raise DatasetFileError(f'{where}: expected "output_tokens" to be a positive integer, '
                               f"found {_found(output_tokens)}")
    return DatasetEntry(text=text, history=history, output_tokens=output_tokens, where=where)


def _messages(value: object, where: str) -> tuple[str, tuple[Turn, ...]]:
    """A chat's newest user message and the turns before it."""
    if not isinstance(value, list):
        raise DatasetFileError(f'{where}: expected "messages" to be a list of '
                               f'{{"role", "content"}} objects, found {_found(value)}')
    if not value:
        raise DatasetFileError(
            f'{where}: expected "messages" to hold at least one message, found an empty list')
    turns: list[Turn] = []
    for i, message in enumerate(value):
        at = f"{where}: messages[{i}]"
        if not isinstance(message, dict):
            raise DatasetFileError(f'{at}: expected an object with string "role" and '
                                   f'"content", found {_found(message)}')
        role, content = _string(message, "role", at), _string(message, "content", at)
        if role not in CHAT_ROLES:
            expected = ", ".join(f'"{r}"' for r in CHAT_ROLES)
            raise DatasetFileError(
                f'{at}: expected "role" to be one of {expected}, found {_found(role)}')
        turns.append((role, content))
    (role, text), last = turns[-1], f"{where}: messages[{len(turns) - 1}]"
    if role != "user":
        raise DatasetFileError(
            f'{last}: expected the last message to be from "user", found "{role}"')
    if not text.strip():
        raise DatasetFileError(
            f'{last}: expected a non-empty "content" (the prompt), found {_found(text)}')
    return text, tuple(turns[:-1])


def _string(obj: dict[str, object], key: str, at: str) -> str:
    if key not in obj:
        raise DatasetFileError(f'{at}: expected a string "{key}", found no "{key}" key')
    value = obj[key]
    if not isinstance(value, str):
        raise DatasetFileError(f'{at}: expected "{key}" to be a string, found {_found(value)}')
    return value


def _found(value: object) -> str:
    """A JSON value's type, with the value where it is short, for "found ..." in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = json.dumps(value if len(value) <= 40 else value[:37] + "...", ensure_ascii=False)
        return f"an empty string ({shown})" if not value.strip() else f"a string ({shown})"
    if isinstance(value, list):
        return f"an array ({len(value)} item{'' if len(value) == 1 else 's'})"
    return "an object"

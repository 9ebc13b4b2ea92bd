"""The user's dataset files: ShareGPT conversations and JSONL prompts, checked in full, sampled.

They are checked while pytest configures, before any server starts, so every problem is a
:class:`DatasetFileError` naming the file, the position (``path:line:column`` for JSON syntax
and JSONL; ``path: entry N`` for ShareGPT's array, N counted from 0 like jq's ``.[N]``), what
was expected and what was found.  Nothing is downloaded: the user names a file that is there.

What an entry is and how a conversation or line becomes entries: prompts.dataset_entries.

A real ShareGPT file is 670 MB and every pytest-xdist worker checks it, so none holds it whole:
the file is read in pieces (prompts.json_stream), and what a check keeps is where a seeded
sample of at most :data:`KEPT_CONVERSATIONS` usable conversations (JSONL: lines) lies in the
file, in the file's order.  :meth:`CheckedFile.entries` reads those back as immutable entries,
in the processes that send prompts; a file changed since its check is an error then.
"""

from __future__ import annotations

import os
import random
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_llmperf.prompts.dataset_entries import (
    CHAT_ROLES,
    SHAREGPT_ROLES,
    DatasetEntry,
    DatasetSummary,
    conversation_entries,
    found_value,
    jsonl_entry,
    sharegpt_turns,
)
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

# The most conversations (JSONL: lines) a run draws its prompts from: far more than a run
# sends (each window sends tens to thousands), few enough to hold as entries in every process.
KEPT_CONVERSATIONS = 10_000


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
            return [jsonl_entry(value, f"{self.path}:{number}")]
        where = f"{self.path}: entry {number}"
        return conversation_entries(sharegpt_turns(value, where), where, self.multi_turn)

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
            made = conversation_entries(sharegpt_turns(item.value, where), where, multi_turn)
            if isinstance(made, str):
                skipped[made] += 1
            else:
                made_entries += len(made)
                sample.offer(item)
    except NotAnArray as top:
        raise DatasetFileError(f"{path}: expected a JSON array of conversations at the top "
                               f"level, found {found_value(top.value)}") from None
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
        jsonl_entry(item.value, f"{path}:{item.number}")
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

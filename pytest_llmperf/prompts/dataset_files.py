"""The user's dataset files: ShareGPT conversations and JSONL prompts, read and checked in full.

They are loaded while pytest configures, before any server starts, so a file is read once,
validated to its last entry, and every problem is a :class:`DatasetFileError` naming the file,
the position (``path:line:column`` for JSON syntax and JSONL; ``path: entry N`` for ShareGPT's
array, N counted from 0 like jq's ``.[N]``), what was expected and what was found.  Entries are
immutable.  Nothing is downloaded: the user names a file that is already there.
"""

from __future__ import annotations

import codecs
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.clients.base import Turn
from pytest_llmperf.prompts.json_text import loads, too_deep

__all__ = ["CHAT_ROLES", "SHAREGPT_ROLES", "DatasetEntry", "DatasetFileError", "DatasetSummary",
           "load_jsonl", "load_sharegpt", "read_sharegpt"]

CHAT_ROLES = ("system", "user", "assistant")

# ShareGPT's speakers by the chat role they play; dumps of other chatbots name their assistant,
# and ShareGPT-style files made by other tools use the chat roles themselves.
SHAREGPT_ROLES: dict[str, str] = {
    "human": "user", "user": "user",
    "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "assistant": "assistant",
    "system": "system",
}


class DatasetFileError(ValueError):
    """A dataset file that cannot be used; the message says where and why."""


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


def load_sharegpt(path: Path, *, multi_turn: bool = False) -> tuple[DatasetEntry, ...]:
    """The requests of a ShareGPT file (``ShareGPT_V3_unfiltered_cleaned_split.json``'s format).

    Each conversation gives its first user turn that a reply follows, with that reply as the
    reference answer and any turns before it (a system turn) as history; with ``multi_turn``,
    one entry per such turn, in order, each with every earlier turn as its history.
    Conversations with fewer than 2 turns, starting with a reply, or with an empty or unknown
    turn before any usable one are skipped (see :func:`read_sharegpt` for the counts).
    """
    return read_sharegpt(path, multi_turn=multi_turn)[0]


def read_sharegpt(path: Path, *, multi_turn: bool = False
                  ) -> tuple[tuple[DatasetEntry, ...], DatasetSummary]:
    """:func:`load_sharegpt`'s entries and what it skipped, for the report."""
    text = _read_text(path)
    try:
        data = loads(text)
    except json.JSONDecodeError as e:
        raise DatasetFileError(
            f"{path}:{e.lineno}:{e.colno} (char {e.pos}): not valid JSON: {e.msg}") from e
    except RecursionError:
        raise DatasetFileError(too_deep(str(path), text, lines=True)) from None
    del text  # a real ShareGPT file is 600 MB: keep one copy, not two
    if not isinstance(data, list):
        raise DatasetFileError(f"{path}: expected a JSON array of conversations at the top "
                               f"level, found {_found(data)}")
    entries: list[DatasetEntry] = []
    skipped: Counter[str] = Counter()
    for index, item in enumerate(data):
        where = f"{path}: entry {index}"
        turns = _sharegpt_turns(item, where)
        made = _conversation_entries(turns, where, multi_turn)
        if isinstance(made, str):
            skipped[made] += 1
        else:
            entries.extend(made)
    summary = DatasetSummary(len(data), len(entries), tuple(skipped.most_common()))
    if not entries:
        found = (f"found {summary.describe()}" if data else "found an empty array")
        raise DatasetFileError(
            f"{path}: no conversation with a human turn followed by a reply ({found})")
    return tuple(entries), summary


def load_jsonl(path: Path) -> tuple[DatasetEntry, ...]:
    """The requests of a JSONL file: one object a line, blank lines ignored.

    Each object has a ``"prompt"`` string or a chat's ``"messages"`` (``{"role", "content"}``
    objects, the last one the user's; the earlier ones become the history), and optionally
    ``"output_tokens"``, a positive integer (null: not given).  Other keys are ignored.
    """
    text = _read_text(path)
    entries: list[DatasetEntry] = []
    # Only "\n" ends a line: str.splitlines would also split at U+2028, which JSON allows
    # unescaped inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = loads(line)
        except json.JSONDecodeError as e:
            raise DatasetFileError(f"{where}:{e.colno}: not valid JSON: {e.msg}") from e
        except RecursionError:
            raise DatasetFileError(too_deep(where, line, lines=False)) from None
        entries.append(_jsonl_entry(obj, where))
    if not entries:
        found = "an empty file" if not text else "only blank lines"
        raise DatasetFileError(
            f"{path}:1: no prompts: expected one JSON object per line, found {found}")
    return tuple(entries)


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise DatasetFileError(f"{path}: expected a dataset file, found a directory")
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise DatasetFileError(f"{path}: no such file") from e
    except OSError as e:
        raise DatasetFileError(f"{path}: cannot be read: {e.strerror or e}") from e
    # Editors on Windows write a BOM; json refuses it.  Offsets below stay the file's.
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return str(memoryview(data)[start:], "utf-8")
    except UnicodeDecodeError as e:
        offset = start + e.start
        line = data.count(b"\n", 0, offset) + 1
        raise DatasetFileError(
            f"{path}:{line}: not valid UTF-8: byte {offset} (0x{data[offset]:02x}): "
            f"{e.reason}; expected a UTF-8 text file") from e


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

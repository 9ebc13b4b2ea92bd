"""What one dataset entry is, and how a ShareGPT conversation or a JSONL line becomes entries,
checked field by field (every problem a DatasetFileError naming where: ``path: entry N`` or
``path:line``, what was expected and what was found).  Reading files is prompts.dataset_files'."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pytest_llmperf.clients.base import Turn
from pytest_llmperf.prompts.json_stream import DatasetFileError

__all__ = ["CHAT_ROLES", "SHAREGPT_ROLES", "DatasetEntry", "DatasetFileError", "DatasetSummary",
           "conversation_entries", "found_value", "jsonl_entry", "sharegpt_turns"]

CHAT_ROLES = ("system", "user", "assistant")

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


def sharegpt_turns(item: object, where: str) -> list[tuple[str, str]]:
    """One conversation's (speaker, value) turns, every one checked."""
    if not isinstance(item, dict):
        raise DatasetFileError(
            f'{where}: expected an object with a "conversations" list, found {found_value(item)}')
    ident = item.get("id")
    if isinstance(ident, (str, int)) and not isinstance(ident, bool):
        where += f" (id {json.dumps(ident, ensure_ascii=False)})"
    if "conversations" not in item:
        raise DatasetFileError(
            f'{where}: expected a "conversations" list, found no "conversations" key')
    conversation = item["conversations"]
    if not isinstance(conversation, list):
        raise DatasetFileError(
            f'{where}: expected "conversations" to be a list, found {found_value(conversation)}')
    turns: list[tuple[str, str]] = []
    for i, turn in enumerate(conversation):
        at = f"{where}, conversations[{i}]"
        if not isinstance(turn, dict):
            raise DatasetFileError(f'{at}: expected an object with string "from" and "value", '
                                   f"found {found_value(turn)}")
        turns.append((_string(turn, "from", at), _string(turn, "value", at)))
    return turns


def conversation_entries(turns: list[tuple[str, str]], where: str, multi_turn: bool
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


def jsonl_entry(obj: object, where: str) -> DatasetEntry:
    if not isinstance(obj, dict):
        raise DatasetFileError(f"{where}: expected a JSON object, found {found_value(obj)}")
    if "prompt" in obj and "messages" in obj:
        raise DatasetFileError(f'{where}: expected either "prompt" or "messages", found both')
    history: tuple[Turn, ...] = ()
    if "prompt" in obj:
        text = obj["prompt"]
        if not isinstance(text, str):
            raise DatasetFileError(
                f'{where}: expected "prompt" to be a string, found {found_value(text)}')
        if not text.strip():
            raise DatasetFileError(
                f'{where}: expected a non-empty "prompt", found {found_value(text)}')
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
                               f"found {found_value(output_tokens)}")
    return DatasetEntry(text=text, history=history, output_tokens=output_tokens, where=where)


def _messages(value: object, where: str) -> tuple[str, tuple[Turn, ...]]:
    """A chat's newest user message and the turns before it."""
    if not isinstance(value, list):
        raise DatasetFileError(f'{where}: expected "messages" to be a list of '
                               f'{{"role", "content"}} objects, found {found_value(value)}')
    if not value:
        raise DatasetFileError(
            f'{where}: expected "messages" to hold at least one message, found an empty list')
    turns: list[Turn] = []
    for i, message in enumerate(value):
        at = f"{where}: messages[{i}]"
        if not isinstance(message, dict):
            raise DatasetFileError(f'{at}: expected an object with string "role" and '
                                   f'"content", found {found_value(message)}')
        role, content = _string(message, "role", at), _string(message, "content", at)
        if role not in CHAT_ROLES:
            expected = ", ".join(f'"{r}"' for r in CHAT_ROLES)
            raise DatasetFileError(
                f'{at}: expected "role" to be one of {expected}, found {found_value(role)}')
        turns.append((role, content))
    (role, text), last = turns[-1], f"{where}: messages[{len(turns) - 1}]"
    if role != "user":
        raise DatasetFileError(
            f'{last}: expected the last message to be from "user", found "{role}"')
    if not text.strip():
        raise DatasetFileError(
            f'{last}: expected a non-empty "content" (the prompt), found {found_value(text)}')
    return text, tuple(turns[:-1])


def _string(obj: dict[str, object], key: str, at: str) -> str:
    if key not in obj:
        raise DatasetFileError(f'{at}: expected a string "{key}", found no "{key}" key')
    value = obj[key]
    if not isinstance(value, str):
        raise DatasetFileError(f'{at}: expected "{key}" to be a string, found {found_value(value)}')
    return value


def found_value(value: object) -> str:
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

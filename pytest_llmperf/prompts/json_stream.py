"""Dataset files read in pieces: a JSON array one element at a time, JSONL one line at a time.

A real ShareGPT file is 670 MB, and every pytest-xdist worker checks it: none of them may hold
it whole.  What these readers hold at once is one read buffer (:data:`CHUNK_BYTES`) and the
element or line being read, which may not pass :data:`MAX_ITEM_CHARS`.  Every problem is a
:class:`DatasetFileError` with the position ``json.loads`` of the whole file would name
(``path:line:column (char N): not valid JSON: ...``, UTF-8 errors by byte and line), and each
element comes with its byte span, so that it can be read again alone (:func:`read_span`).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from pytest_llmperf.prompts.json_text import DECODER, deepest, too_deep, too_deep_message

__all__ = ["CHUNK_BYTES", "MAX_ITEM_CHARS", "DatasetFileError", "Item", "NotAnArray",
           "open_dataset", "read_array", "read_lines", "read_span"]

CHUNK_BYTES = 1 << 20
# One conversation or line: far past any prompt a model takes (10M tokens is refused anyway),
# short of a whole dataset given as one line.
MAX_ITEM_CHARS = 64 << 20
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A JSON error this close to the end of what was read may only mean that the element goes on.
_NEAR_END = 64


class DatasetFileError(ValueError):
    """A dataset file that cannot be used; the message says where and why."""


class NotAnArray(Exception):
    """The file holds one JSON value that is no array (``value``)."""

    def __init__(self, value: object) -> None:
        super().__init__("not an array")
        self.value = value


class Item(NamedTuple):
    """An array element or a JSONL line: its number (index from 0, or line from 1), its value
    and its bytes in the file (``start``, ``end``)."""

    number: int
    value: object
    start: int
    end: int


def open_dataset(path: Path) -> BinaryIO:
    if path.is_dir():
        raise DatasetFileError(f"{path}: expected a dataset file, found a directory")
    try:
        return path.open("rb")
    except FileNotFoundError as e:
        raise DatasetFileError(f"{path}: no such file") from e
    except OSError as e:
        raise DatasetFileError(f"{path}: cannot be read: {e.strerror or e}") from e


def read_span(path: Path, start: int, end: int) -> str:
    """The text of bytes ``start:end`` of a file :func:`read_array` or :func:`read_lines` read."""
    with open_dataset(path) as stream:
        try:
            stream.seek(start)
            return stream.read(end - start).decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetFileError(f"{path}: cannot be read again: {e}") from e


def read_lines(path: Path) -> Iterator[Item]:
    """Each non-blank line's JSON value; only ``\\n`` ends a line (JSON strings may hold
    U+2028).  DatasetFileError ``path:N: no prompts`` for a file of blank lines only."""
    seen_text = given = False
    with open_dataset(path) as stream:
        offset = 0
        for number in range(1, 1 << 62):
            raw = _readline(path, stream, number)
            if not raw:
                break
            start, offset = offset, offset + len(raw)
            body = raw[len(codecs.BOM_UTF8):] if start == 0 and raw.startswith(
                codecs.BOM_UTF8) else raw
            try:
                line = body.decode("utf-8")
            except UnicodeDecodeError as e:
                at = offset - len(body) + e.start
                raise DatasetFileError(_utf8_error(path, number, at, body[e.start], e)) from e
            seen_text = seen_text or bool(line)
            line = line[:-1] if line.endswith("\n") else line
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                value = DECODER.decode(line)
            except json.JSONDecodeError as e:
                raise DatasetFileError(f"{where}:{e.colno}: not valid JSON: {e.msg}") from e
            except RecursionError:
                raise DatasetFileError(too_deep(where, line, lines=False)) from None
            given = True
            yield Item(number, value, offset - len(body), offset)  # the BOM is not the line's
    if not given:
        found = "an empty file" if not seen_text else "only blank lines"
        raise DatasetFileError(
            f"{path}:1: no prompts: expected one JSON object per line, found {found}")


def _readline(path: Path, stream: BinaryIO, number: int) -> bytes:
    try:
        raw = stream.readline(MAX_ITEM_CHARS + 1)
    except OSError as e:
        raise DatasetFileError(f"{path}: cannot be read: {e.strerror or e}") from e
    if len(raw) > MAX_ITEM_CHARS:
        raise DatasetFileError(f"{path}:{number}: a line of over {MAX_ITEM_CHARS >> 20} MiB; "
                               "expected one JSON object per line (a JSON array is "
                               "sharegpt:PATH)")
    return raw


def read_array(path: Path) -> Iterator[Item]:
    """The elements of the JSON array the file holds, one at a time; :class:`NotAnArray` when
    it holds another value, DatasetFileError when it is no JSON at all."""
    with open_dataset(path) as stream:
        yield from _Reader(path, stream).array()


class _Reader:
    """The file's text in a sliding buffer.  Positions are the file's character indexes;
    ``text`` holds those from ``chars`` on, and nothing before ``at`` (the start of what may
    still be needed) is kept once the buffer is read on."""

    def __init__(self, path: Path, stream: BinaryIO) -> None:
        self.path, self.stream = path, stream
        self.text, self.chars, self.at = "", 0, 0
        self.newlines = 0  # "\n" before text[0]
        self.last_newline = -1  # the position of the last "\n" before text[0]
        self.pending = b""  # the start of a character the read cut
        self.read_bytes = 0  # bytes read from the file
        self.eof = False
        self._mark = (0, 0)  # a position and the file offset of its byte, to count on from

    @property
    def end(self) -> int:
        return self.chars + len(self.text)

    # --- the buffer -----------------------------------------------------------------------

    def more(self, wanted: int = CHUNK_BYTES) -> bool:
        """Read on (dropping the text before ``at``); False at the end of the file."""
        if self.eof:
            return False
        self._drop()
        try:
            data = self.stream.read(max(wanted, CHUNK_BYTES))
        except OSError as e:
            raise DatasetFileError(f"{self.path}: cannot be read: {e.strerror or e}") from e
        first = self.read_bytes == 0
        self.read_bytes += len(data)
        if not data:
            self.eof = True
            if self.pending:
                self._decode(b"", final=True)
            return False
        if first and data.startswith(codecs.BOM_UTF8):  # Windows editors write one
            data = data[len(codecs.BOM_UTF8):]
            self._mark = (0, len(codecs.BOM_UTF8))
        self._decode(data, final=False)
        return True

    def _decode(self, data: bytes, *, final: bool) -> None:
        data, start = self.pending + data, self.read_bytes - len(data) - len(self.pending)
        try:
            text = data.decode("utf-8")
            self.pending = b""
        except UnicodeDecodeError as e:
            if final or e.reason != "unexpected end of data" or len(data) - e.start > 3:
                line = self.newlines + self.text.count("\n") + data.count(b"\n", 0, e.start) + 1
                raise DatasetFileError(_utf8_error(self.path, line, start + e.start,
                                                   data[e.start], e)) from e
            text, self.pending = data[:e.start].decode("utf-8"), data[e.start:]
        self.text += text

    def _drop(self) -> None:
        gone = self.at - self.chars
        if gone <= 0:
            return
        self.byte_at(self.at)
        self.newlines += self.text.count("\n", 0, gone)
        last = self.text.rfind("\n", 0, gone)
        if last >= 0:
            self.last_newline = self.chars + last
        self.text, self.chars = self.text[gone:], self.at

    def byte_at(self, position: int) -> int:
        """The file offset of the character at ``position``; asked for in order."""
        mark, count = self._mark
        piece = self.text[mark - self.chars:position - self.chars]
        count += len(piece) if piece.isascii() else len(piece.encode("utf-8"))
        self._mark = (position, count)
        return count

    def skip_whitespace(self, position: int) -> int | None:
        """The position after whitespace from ``position``; None at the end of the file."""
        while True:
            found = _WHITESPACE.match(self.text, position - self.chars)
            assert found is not None  # it matches the empty string
            index = found.end()
            position = self.chars + index
            if index < len(self.text):
                return position
            if not self.more():
                return None

    def char(self, position: int) -> str:
        return self.text[position - self.chars]

    def place(self, position: int) -> tuple[int, int]:
        """The line and column of ``position``, as json.loads of the whole file counts them."""
        index = position - self.chars
        line = self.newlines + self.text.count("\n", 0, index) + 1
        last = self.text.rfind("\n", 0, index)
        return line, position - (self.chars + last if last >= 0 else self.last_newline)

    def error(self, msg: str, position: int) -> DatasetFileError:
        line, column = self.place(position)
        return DatasetFileError(f"{self.path}:{line}:{column} (char {position}): not valid "
                                f"JSON: {msg}")

    # --- JSON -----------------------------------------------------------------------------

    def value(self, position: int, number: int | None) -> tuple[object, int]:
        """The JSON value at ``position`` and where it ends, reading on while it may go on."""
        self.at = position
        while True:
            index = position - self.chars
            try:
                value, end = DECODER.raw_decode(self.text, index)
            except json.JSONDecodeError as e:
                if self.eof or not (e.msg.startswith("Unterminated string")
                                    or e.pos >= len(self.text) - _NEAR_END):
                    raise self.error(e.msg, self.chars + e.pos) from None
            except RecursionError:
                depth, deepest_at = deepest(self.text, index)
                line, column = self.place(self.chars + deepest_at)
                raise DatasetFileError(too_deep_message(
                    f"{self.path}:{line}:{column}", depth + (number is not None))) from None
            else:
                if end < len(self.text) or self.eof:  # a number at the end may go on
                    return value, self.chars + end
            if len(self.text) - index > MAX_ITEM_CHARS:
                line, column = self.place(position)
                what = ("one JSON value" if number is None
                        else f"entry {number}, a JSON value")
                raise DatasetFileError(f"{self.path}:{line}:{column}: {what} of over "
                                       f"{MAX_ITEM_CHARS >> 20} MiB; expected conversations "
                                       "of a sane size")
            self.more(len(self.text) - index)  # each try reads as much again

    def syntax(self, after: int, wrong: int | None) -> DatasetFileError:
        """The error json.loads gives for the array's punctuation from ``after`` (the end of
        an element) to ``wrong`` (None: the end of the file)."""
        stop = len(self.text) if wrong is None else wrong - self.chars + 1
        snippet = "[0" + self.text[after - self.chars:stop]
        try:
            DECODER.decode(snippet)
        except json.JSONDecodeError as e:
            return self.error(e.msg, after + e.pos - 2)
        raise AssertionError(f"no error in {snippet!r}")  # pragma: no cover

    def array(self) -> Iterator[Item]:
        position = self.skip_whitespace(0)
        if position is None or self.char(position) != "[":
            value, end = self.value(self.end if position is None else position, None)
            extra = self.skip_whitespace(end)
            if extra is not None:
                raise self.error("Extra data", extra)
            raise NotAnArray(value)
        position = self.skip_whitespace(position + 1)
        if position is None or self.char(position) != "]":
            for number in range(1 << 62):
                start = self.byte_at(self.end if position is None else position)
                value, end = self.value(self.end if position is None else position, number)
                yield Item(number, value, start, self.byte_at(end))
                self.at = end
                position = self.skip_whitespace(end)
                if position is None or self.char(position) not in ",]":
                    raise self.syntax(end, position)
                if self.char(position) == "]":
                    break
                position = self.skip_whitespace(position + 1)
                if position is None or self.char(position) == "]":
                    raise self.syntax(end, position)
        assert position is not None
        extra = self.skip_whitespace(position + 1)
        if extra is not None:
            raise self.error("Extra data", extra)


def _utf8_error(path: Path, line: int, offset: int, byte: int, e: UnicodeDecodeError) -> str:
    return (f"{path}:{line}: not valid UTF-8: byte {offset} (0x{byte:02x}): {e.reason}; "
            "expected a UTF-8 text file")

"""Incremental Server-Sent Events parser (the WHATWG event-stream format).

Network reads split and merge events arbitrarily, so the parser takes bytes as they arrive and
returns every event completed so far.  Comment lines (``: ping``) and blank keep-alives produce
nothing; an event's ``data`` lines are joined with newlines as the format requires.

A line that has not ended yet is kept as the reads that brought it and joined once, when it
ends: a long line costs time linear in its length, however finely the network cut it.  No line,
and no event's data, may be longer than :data:`MAX_LINE_BYTES` (:class:`LineTooLong`): a server
that never ends a line costs the client that much memory, no more.

A parser made with ``last`` (OpenAI's ``[DONE]``) ends at the event whose data it is: what comes
after it is not read, so not even bytes that do not decode can fail the stream it ended.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["MAX_LINE_BYTES", "LineTooLong", "SSEEvent", "SSEParser"]

_LINE_END = re.compile(rb"\r\n|\r|\n")
# A whole answer in one event (a server that does not stream) is far below this.
MAX_LINE_BYTES = 16 * 1024 * 1024


class LineTooLong(Exception):
    """A line, or an event's data, longer than the client holds for one."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a line of the stream is longer than {limit} bytes, the most the "
                         f"client holds for one")


class SSEEvent(NamedTuple):
    """One dispatched event (a named tuple: made once per token, it must be cheap)."""

    data: str
    event: str = "message"


class SSEParser:
    def __init__(self, max_line: int | None = None, *, last: str | None = None) -> None:
        self._max = MAX_LINE_BYTES if max_line is None else max_line
        self._last = last  # the data of the stream's last event, if it has one
        self.ended = False  # that event came: the rest is not read
        self._held: list[bytes] = []  # the line not ended yet, as the reads brought it
        self._held_size = 0
        self._cr = False  # the held line ended with a lone \r, which may be half of \r\n
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by ``chunk``, in order."""
        if self.ended:
            return []
        if not self._held and not self._cr and b"\r" not in chunk:
            if not self._data and not self._event:
                return self._whole_events(chunk)
            # The hot path: nothing held, only \n ends lines (vLLM, SGLang, llama.cpp).
            lines = chunk.split(b"\n")
            tail = lines.pop()
            events = self._take_lines(lines, len(chunk) > self._max) if lines else []
            if not self.ended:
                self._hold(tail)
            return events
        if not self._cr and b"\n" not in chunk and b"\r" not in chunk:
            self._hold(chunk)  # the line goes on: no copy of what came before
            return []
        data = b"".join([*self._held, b"\r", chunk] if self._cr else [*self._held, chunk])
        self._held, self._held_size, self._cr = [], 0, False
        if b"\r" not in data:
            lines = data.split(b"\n")
        else:  # \r\n or a lone \r: a trailing \r waits for the next byte
            self._cr = data.endswith(b"\r")
            lines = _LINE_END.split(data[:-1] if self._cr else data)
        tail = lines.pop()
        events = self._take_lines(lines, len(data) > self._max)
        if self.ended:
            self._cr = False
        else:
            self._hold(tail)
        return events

    def close(self) -> list[SSEEvent]:
        """Events left when the stream ends (a last event with no blank line after it)."""
        events: list[SSEEvent] = []
        if self.ended:
            return events
        if self._held or self._cr:
            # At the end a held line has ended, with its \r or with the stream.
            line = b"".join(self._held)
            self._held, self._held_size, self._cr = [], 0, False
            event = self._take_line(line.decode("utf-8"))
            if event is not None:
                events.append(event)
        event = self._take_line("")
        if event is not None:
            events.append(event)
        return events

    def _whole_events(self, chunk: bytes) -> list[SSEEvent]:
        """The hottest path: nothing held, no event begun, only \n ends lines.  Each
        ``data: ...\n\n`` (one line of data, then the blank line) is an event of its own,
        a split and a decode; from the first part of another shape on, the lines go by the
        general rule."""
        parts = chunk.split(b"\n\n")
        rest = parts.pop()  # what follows the last blank line: usually nothing
        events: list[SSEEvent] = []
        for at, part in enumerate(parts):
            if not part.startswith(b"data: ") or b"\n" in part or len(part) > self._max:
                rest = b"\n\n".join([*parts[at:], rest])
                break
            event = SSEEvent(part[6:].decode("utf-8"))
            events.append(event)
            if event.data == self._last:  # the last event: what follows is not read
                self._end()
                return events
        if rest:
            lines = rest.split(b"\n")
            tail = lines.pop()
            if lines:
                events += self._take_lines(lines, len(rest) > self._max)
            if not self.ended:
                self._hold(tail)
        return events

    def _hold(self, part: bytes) -> None:
        if part:
            self._held.append(part)
            self._held_size += len(part)
            if self._held_size > self._max:
                raise LineTooLong(self._max)

    def _take_lines(self, lines: list[bytes], long: bool) -> list[SSEEvent]:
        """``long``: the bytes they came in were longer than a line may be."""
        events: list[SSEEvent] = []
        for line in lines:
            if long and len(line) > self._max:
                raise LineTooLong(self._max)
            # The two common lines, "data: ..." and the blank line that dispatches, are taken
            # here; every other line goes by the general rule.
            if line.startswith(b"data: "):
                self._data.append(line[6:].decode("utf-8"))
                self._data_size += len(line)
                if self._data_size > self._max:
                    raise LineTooLong(self._max)
                continue
            event: SSEEvent | None
            if not line and self._data and not self._event:
                event = SSEEvent("\n".join(self._data))
                self._data, self._data_size = [], 0
            else:
                event = self._take_line(line.decode("utf-8"))
                if event is None:
                    continue
            events.append(event)
            if event.data == self._last:  # the last event: the lines after it are not read
                self._end()
                break
        return events

    def _end(self) -> None:
        self.ended = True
        self._held, self._held_size, self._cr = [], 0, False
        self._data, self._data_size = [], 0

    def _add_data(self, value: str) -> None:
        self._data.append(value)
        self._data_size += len(value) + 1
        if self._data_size > self._max:
            raise LineTooLong(self._max)

    def _take_line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(data="\n".join(self._data), event=self._event or "message")
            self._data, self._data_size, self._event = [], 0, ""
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._add_data(value)
        elif name == "event":
            self._event = value
        return None

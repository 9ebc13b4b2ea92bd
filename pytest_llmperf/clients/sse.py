"""Incremental Server-Sent Events parser (the WHATWG event-stream format).

Network reads split and merge events arbitrarily, so the parser takes bytes as they arrive and
returns every event completed so far.  Comment lines (``: ping``) and blank keep-alives produce
nothing; an event's ``data`` lines are joined with newlines as the format requires.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["SSEEvent", "SSEParser"]

_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEEvent(NamedTuple):
    """One dispatched event (a named tuple: made once per token, it must be cheap)."""

    data: str
    event: str = "message"


class SSEParser:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by ``chunk``, in order."""
        self._buffer += chunk
        events: list[SSEEvent] = []
        if b"\r" in self._buffer:  # \r\n or a lone \r: the general rule, line by line
            return self._feed_lines(events)
        # Only \n ends lines (vLLM, SGLang, llama.cpp): split them all at once, the hot path.
        # Its two common lines, "data: ..." and the blank line that dispatches, are taken
        # here; every other line goes by the general rule.
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data: "):
                self._data.append(line[6:].decode("utf-8"))
                continue
            if not line and self._data and not self._event:
                events.append(SSEEvent("\n".join(self._data)))
                self._data = []
                continue
            event = self._take_line(line.decode("utf-8"))
            if event is not None:
                events.append(event)
        return events

    def _feed_lines(self, events: list[SSEEvent]) -> list[SSEEvent]:
        while True:
            line, found = self._next_line()
            if not found:
                return events
            event = self._take_line(line)
            if event is not None:
                events.append(event)

    def close(self) -> list[SSEEvent]:
        """Events left when the stream ends (a last event with no blank line after it)."""
        events: list[SSEEvent] = []
        if self._buffer:
            # A trailing lone \r was held back in case \n followed; at the end it ends the line.
            event = self._take_line(self._buffer.removesuffix(b"\r").decode("utf-8"))
            self._buffer = b""
            if event is not None:
                events.append(event)
        event = self._take_line("")
        if event is not None:
            events.append(event)
        return events

    def _next_line(self) -> tuple[str, bool]:
        match = _LINE_END.search(self._buffer)
        if match is None:
            return "", False
        if match.group() == b"\r" and match.end() == len(self._buffer):
            return "", False  # a lone \r may be the first half of \r\n: wait for more
        line = self._buffer[: match.start()].decode("utf-8")
        self._buffer = self._buffer[match.end() :]
        return line, True

    def _take_line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(data="\n".join(self._data), event=self._event or "message")
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

"""Request traces: when each request of a recorded workload arrived, how long its prompt and its
answer were, and which prompt blocks it shared with the requests before it.

Read for ``--llmperf-dataset trace:FILE`` while pytest configures, so a malformed file stops the
run with its line before any server starts.  The format is told by the file's first line:

- **JSONL** (Mooncake's traces are read as they are): one object per line with ``timestamp``
  (ms, from any origin), ``input_length`` and ``output_length`` (tokens), and optionally
  ``hash_ids`` (one id per :data:`BLOCK_TOKENS`-token block of the prompt: two requests whose
  lists start with the same ids share those blocks' text, as a system prompt, a document or a
  conversation's history is shared), ``session_id`` and ``turn``.
- **BurstGPT**'s CSV (``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log
  Type``; ``Timestamp`` in seconds).  Rows of failed requests (0 response tokens) are left out
  and counted.
- **Azure LLM inference trace** CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``;
  ``TIMESTAMP`` a date and time such as ``2023-11-16 18:15:46.6805900``).

Requests are replayed in the order of their timestamps (a stable sort: ties keep the file's
order), each at its offset from the first.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from pytest_llmperf.prompts.dataset_entries import found_value
from pytest_llmperf.prompts.json_stream import DatasetFileError, open_dataset, read_lines
from pytest_llmperf.prompts.synthetic import MAX_TOKENS

__all__ = ["BLOCK_TOKENS", "Trace", "TraceRequest", "read_trace", "replayed_trace"]

BLOCK_TOKENS = 512  # the tokens one hash id stands for (Mooncake's block size)

_BURSTGPT = ("Timestamp", "Request tokens", "Response tokens")
_AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_EXPECTED = ("expected a trace: JSON lines with timestamp, input_length and output_length, or "
             "the CSV header of BurstGPT (Timestamp,Model,Request tokens,Response tokens,...) "
             "or of the Azure LLM inference trace (TIMESTAMP,ContextTokens,GeneratedTokens)")


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One recorded request: seconds after the trace's first, its prompt's and answer's
    lengths in tokens, its prompt's block ids, and its conversation and turn where known."""

    offset_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()
    session: str | None = None
    turn: int | None = None


@dataclass(frozen=True)
class Trace:
    """A trace file's requests in arrival order (``offset_s`` from the first, 0)."""

    path: Path
    format: str  # "jsonl", "burstgpt" or "azure"
    requests: tuple[TraceRequest, ...]
    left_out: int = 0  # rows of failed requests the file held (BurstGPT)
    speed: float = 1.0  # replayed this many times faster than recorded
    start_s: float = 0.0  # the slice of the recording replayed, in its own seconds
    end_s: float | None = None

    @property
    def duration_s(self) -> float:
        """Seconds from the first arrival to the last, as replayed."""
        return self.requests[-1].offset_s if self.requests else 0.0

    @property
    def mean_rate(self) -> float:
        """Arrivals per second as replayed (all at once: inf)."""
        if len(self.requests) < 2:
            return math.inf
        return (len(self.requests) - 1) / self.duration_s if self.duration_s > 0 else math.inf

    @property
    def reuse_ratio(self) -> float | None:
        """The share of prompt tokens in leading blocks an earlier request of the trace had:
        what a perfect prefix cache could serve.  None when the trace names no blocks."""
        if not any(r.hash_ids for r in self.requests):
            return None
        seen: set[tuple[int, ...]] = set()
        reused = total = 0
        for request in self.requests:
            total += request.input_tokens
            for j in range(len(request.hash_ids)):
                prefix = request.hash_ids[:j + 1]
                if prefix in seen:
                    reused += min(BLOCK_TOKENS, request.input_tokens - j * BLOCK_TOKENS)
                seen.add(prefix)
        return reused / total if total else None

    def window(self, start_s: float = 0.0, end_s: float | None = None,
               speed: float = 1.0) -> Trace:
        """The requests recorded from ``start_s`` up to (not at) ``end_s`` seconds of the
        trace, their offsets from the first of them divided by ``speed``."""
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"a trace's speed is a number > 0, got {speed}")
        chosen = [r for r in self.requests
                  if r.offset_s >= start_s and (end_s is None or r.offset_s < end_s)]
        if not chosen:
            until = f"{end_s:g} s" if end_s is not None else "its end"
            raise ValueError(f"{self.path}: no request of the trace arrived between "
                             f"{start_s:g} s and {until} (it spans "
                             f"{self.duration_s:g} s)")
        first = chosen[0].offset_s
        return replace(self, requests=tuple(replace(r, offset_s=(r.offset_s - first) / speed)
                                            for r in chosen),
                       speed=speed, start_s=start_s, end_s=end_s)


def read_trace(path: Path) -> Trace:
    """The trace in ``path``; DatasetFileError naming the file, line and what was expected."""
    with open_dataset(path) as stream:
        head = stream.readline(4096).decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if head.startswith("{"):
        requests, left_out, kind = list(_jsonl(path)), 0, "jsonl"
    else:
        fields = [f.strip() for f in next(csv.reader([head]), [])]
        if all(name in fields for name in _BURSTGPT):
            kind = "burstgpt"
        elif all(name in fields for name in _AZURE):
            kind = "azure"
        else:
            shown = head if len(head) <= 80 else head[:77] + "..."
            raise DatasetFileError(f"{path}:1: {_EXPECTED}; found {shown!r}")
        requests, left_out = _csv(path, kind)
    if not requests:
        raise DatasetFileError(f"{path}: no request to replay (of {left_out} rows, every one "
                               "had 0 response tokens: a failed request)" if left_out else
                               f"{path}: no request to replay: {_EXPECTED}")
    requests.sort(key=lambda r: r.offset_s)
    first = requests[0].offset_s
    return Trace(path, kind, tuple(replace(r, offset_s=r.offset_s - first) for r in requests),
                 left_out)


def replayed_trace(path: Path, speed: float = 1.0,
                   window: tuple[float, float | None] | None = None) -> Trace:
    """The trace in ``path`` as replayed: only its ``window`` (START, END seconds) where given,
    ``speed`` times faster (--llmperf-trace-window, --llmperf-trace-speed)."""
    start, end = window or (0.0, None)
    return read_trace(path).window(start, end, speed)


def _jsonl(path: Path) -> Iterator[TraceRequest]:
    for item in read_lines(path):
        where, value = f"{path}:{item.number}", item.value
        if not isinstance(value, dict):
            raise DatasetFileError(f"{where}: expected a JSON object (timestamp, input_length, "
                                   f"output_length), found {found_value(value)}")
        for key in ("timestamp", "input_length", "output_length"):
            if key not in value:
                raise DatasetFileError(f"{where}: no {key!r}; expected timestamp (ms), "
                                       "input_length and output_length (tokens)")
        timestamp = value["timestamp"]
        if (isinstance(timestamp, bool) or not isinstance(timestamp, int | float)
                or not math.isfinite(timestamp) or timestamp < 0):
            raise DatasetFileError(f"{where}: timestamp: expected milliseconds, a number >= 0, "
                                   f"found {found_value(timestamp)}")
        tokens = _tokens(where, "input_length", value["input_length"])
        hash_ids = value.get("hash_ids", [])
        if not isinstance(hash_ids, list) or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in hash_ids):
            raise DatasetFileError(f"{where}: hash_ids: expected a list of block ids (whole "
                                   f"numbers >= 0), found {found_value(hash_ids)}")
        if hash_ids and (len(hash_ids) - 1) * BLOCK_TOKENS >= tokens:
            raise DatasetFileError(
                f"{where}: hash_ids: {len(hash_ids)} blocks of {BLOCK_TOKENS} tokens need an "
                f"input_length above {(len(hash_ids) - 1) * BLOCK_TOKENS}, found {tokens}")
        session, turn = value.get("session_id"), value.get("turn")
        if session is not None and (isinstance(session, bool)
                                    or not isinstance(session, str | int)):
            raise DatasetFileError(f"{where}: session_id: expected a string or a number, found "
                                   f"{found_value(session)}")
        if turn is not None and (isinstance(turn, bool) or not isinstance(turn, int)
                                 or turn < 0):
            raise DatasetFileError(f"{where}: turn: expected a whole number >= 0, found "
                                   f"{found_value(turn)}")
        yield TraceRequest(timestamp / 1000.0, tokens,
                           _tokens(where, "output_length", value["output_length"]),
                           tuple(hash_ids), None if session is None else str(session), turn)


def _tokens(where: str, key: str, value: object) -> int:
    if (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS):
        raise DatasetFileError(f"{where}: {key}: expected a whole number of tokens from 1 to "
                               f"{MAX_TOKENS}, found {found_value(value)}")
    return value


def _csv(path: Path, kind: str) -> tuple[list[TraceRequest], int]:
    names = _BURSTGPT if kind == "burstgpt" else _AZURE
    requests: list[TraceRequest] = []
    left_out = 0
    with open_dataset(path) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        try:
            rows = csv.reader(text)
            header = [f.strip() for f in next(rows)]
            columns = [header.index(name) for name in names]
            for number, row in enumerate(rows, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                where = f"{path}:{number}"
                if len(row) < len(header):
                    raise DatasetFileError(f"{where}: expected {len(header)} columns "
                                           f"({','.join(header)}), found {len(row)}")
                stamp, prompt, answer = (row[c].strip() for c in columns)
                offset = _seconds(where, names[0], stamp, kind)
                output = _count(where, names[2], answer)
                if output == 0:  # a failed request: BurstGPT records it with no answer
                    left_out += 1
                    continue
                requests.append(TraceRequest(offset, _count(where, names[1], prompt, least=1),
                                             output))
        except UnicodeDecodeError as e:
            raise DatasetFileError(f"{path}: not UTF-8 text ({e.reason})") from e
        except csv.Error as e:
            raise DatasetFileError(f"{path}: not a CSV file: {e}") from e
    return requests, left_out


def _seconds(where: str, column: str, text: str, kind: str) -> float:
    if kind == "azure":
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            raise DatasetFileError(f"{where}: {column}: expected a date and time such as "
                                   f"2023-11-16 18:15:46.6805900, found {text!r}") from None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise DatasetFileError(f"{where}: {column}: expected seconds, a number >= 0, found "
                               f"{text!r}")
    return seconds


def _count(where: str, column: str, text: str, least: int = 0) -> int:
    if not (text.isascii() and text.isdigit()) or not least <= int(text) <= MAX_TOKENS:
        raise DatasetFileError(f"{where}: {column}: expected a whole number of tokens from "
                               f"{least} to {MAX_TOKENS}, found {text!r}")
    return int(text)


"""The result store: one JSON document per run, written atomically, read back only when whole.

A document holds a ``schema`` version, the run's ``fingerprint`` (hardware, software, the
thresholds file; see ``observe.host.host_fingerprint``) and one entry per measured window:
what the report shows (aggregates, verdicts, server and resource figures) plus the raw
per-request records.  Saved runs live in a storage directory (``.llmperf/`` by default), one
file per run named ``NNNN_NAME.json`` so that saving never replaces an earlier run.

A file that cannot be read, is not JSON (a truncated write), is not a run document, or has a
newer schema than this plugin reads is refused with :class:`StoreError` naming the file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmperf.results.errors import kind_of
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource

__all__ = ["SCHEMA", "SavedRun", "StoreError", "decode_window", "describe_saved", "encode_records",
           "find_saved", "load_run", "run_document", "save_run", "saved_runs", "write_atomic",
           "write_run"]

SCHEMA = 1
_NS_PER_US = 1_000
_SAVED = re.compile(r"(?P<number>\d{4})_(?P<name>[A-Za-z0-9._-]+)\.json")
_REQUIRED = ("schema", "created", "fingerprint", "windows")


class StoreError(ValueError):
    """A stored run that cannot be used; the message names the file."""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees a half-written file: a temporary
    file beside it, fsync, then one rename (the old file stays whole until then)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def encode_records(run: LoadRun) -> list[dict[str, Any]]:
    """The window's raw requests, JSON-ready, in integer microseconds: ``send_us`` (and, open
    loop, ``scheduled_us``) from the start of the window, ``chunk_us`` and ``end_us`` from the
    request's own send."""
    return [_encode(record, run.window_start_ns) for record in run.records]


def _encode(record: RequestRecord, start_ns: int) -> dict[str, Any]:
    send = record.send_ns
    return {
        "id": record.request_id,
        "send_us": (send - start_ns) // _NS_PER_US,
        "chunk_us": [(t - send) // _NS_PER_US for t in record.chunk_ns],
        "end_us": (record.end_ns - send) // _NS_PER_US,
        "output_tokens": record.output_tokens,
        "output_token_source": _value(record.output_token_source),
        "input_tokens": record.input_tokens,
        "input_token_source": _value(record.input_token_source),
        "finish_reason": record.finish_reason,
        "error": record.error,
        **({} if record.error is None else {"error_kind": kind_of(record)}),
        "resent": record.resent,
        # Open loop: when it was due, from the start of the window (absent: a closed loop).
        **({} if record.scheduled_ns is None
           else {"scheduled_us": (record.scheduled_ns - start_ns) // _NS_PER_US}),
        # Written only where there is something to say, so a plain run stays small.
        **_optional(record, send),
    }


def _optional(record: RequestRecord, send: int) -> dict[str, Any]:
    """The answer length asked for, cached and exact-input counts, and a reasoning answer's
    split (answer times from the send, like chunk_us)."""
    extra: dict[str, Any] = {key: value for key, value in (
        ("max_tokens", record.max_tokens), ("cached_tokens", record.cached_tokens),
        ("dataset_input_tokens", record.dataset_input_tokens)) if value is not None}
    if record.queued_ns:
        extra["queued_us"] = record.queued_ns // _NS_PER_US
    if record.has_reasoning:
        extra["reasoning_chunks"] = record.reasoning_chunks
        extra["reasoning_tokens"] = record.reasoning_tokens
        extra["reasoning_token_source"] = _value(record.reasoning_token_source)
        for key, at in (("answer_start_us", record.answer_start_ns),
                        ("answer_end_us", record.answer_end_ns)):
            extra[key] = None if at is None else (at - send) // _NS_PER_US
    return extra


def _value(source: Any) -> str | None:
    return None if source is None else str(source.value)


def decode_window(window: Mapping[str, Any], where: str = "result") -> LoadRun:
    """A stored window's requests as a :class:`LoadRun` again (times in whole microseconds, so
    the metrics of a stored run are those of the run to within a microsecond), in send order.
    A window that does not hold what :func:`encode_records` writes raises :class:`StoreError`."""
    try:
        records = tuple(sorted((_decode(raw) for raw in window["records"]),
                               key=lambda record: record.send_ns))
        duration_ns = round(float(window["scalars"]["duration_s"]) * 1e9)
        users = int(window["load"]["concurrency"])
        warmup = int(window["load"]["warmup"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{where}: a window of {window.get('nodeid', '?')} has no usable "
                         f"records ({type(exc).__name__}: {exc})") from None
    return LoadRun(records, 0, duration_ns, users, warmup)


def _decode(raw: Mapping[str, Any]) -> RequestRecord:
    send = int(raw["send_us"]) * _NS_PER_US
    return RequestRecord(
        request_id=int(raw["id"]),
        send_ns=send,
        chunk_ns=tuple(send + int(t) * _NS_PER_US for t in raw["chunk_us"]),
        end_ns=send + int(raw["end_us"]) * _NS_PER_US,
        output_tokens=int(raw["output_tokens"]),
        output_token_source=_source(raw.get("output_token_source")),
        input_tokens=None if raw.get("input_tokens") is None else int(raw["input_tokens"]),
        input_token_source=_source(raw.get("input_token_source")),
        finish_reason=raw.get("finish_reason"),
        error=raw.get("error"),
        error_kind=raw.get("error_kind"),  # absent in older files: read from the message
        resent=bool(raw.get("resent", False)),
        scheduled_ns=None if raw.get("scheduled_us") is None
        else int(raw["scheduled_us"]) * _NS_PER_US,
        max_tokens=_int(raw.get("max_tokens")),
        queued_ns=(_int(raw.get("queued_us")) or 0) * _NS_PER_US,
        cached_tokens=_int(raw.get("cached_tokens")),
        dataset_input_tokens=_int(raw.get("dataset_input_tokens")),
        reasoning_chunks=int(raw.get("reasoning_chunks", 0)),
        reasoning_tokens=_int(raw["reasoning_tokens"]) if "reasoning_tokens" in raw else 0,
        reasoning_token_source=_source(raw.get("reasoning_token_source")),
        answer_start_ns=_at(send, raw.get("answer_start_us")),
        answer_end_ns=_at(send, raw.get("answer_end_us")),
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _at(send_ns: int, us: Any) -> int | None:
    return None if us is None else send_ns + int(us) * _NS_PER_US


def _source(value: Any) -> TokenSource | None:
    return None if value is None else TokenSource(value)


def run_document(windows: Sequence[Mapping[str, Any]], fingerprint: Mapping[str, Any],
                 searches: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The run's document; ``searches`` are its sweeps' and capacity searches' entries (their
    probes' figures, not their raw requests)."""
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "fingerprint": dict(fingerprint),
        "windows": [dict(window) for window in windows],
        "searches": [dict(search) for search in searches],
    }


def write_run(document: Mapping[str, Any], path: Path) -> Path:
    write_atomic(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def load_run(path: Path) -> dict[str, Any]:
    """A stored run, whole, or :class:`StoreError` saying what is wrong with which file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot read stored run {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise StoreError(f"stored run {path} is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise StoreError(f"stored run {path} is not valid JSON (truncated or corrupt?): "
                         f"{exc}") from None
    if not isinstance(document, dict) or any(key not in document for key in _REQUIRED):
        raise StoreError(f"{path} is not a pytest-llmperf run: expected an object with "
                         f"{', '.join(_REQUIRED)}")
    schema = document["schema"]
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise StoreError(f"{path}: schema {schema!r} is not a version number")
    if schema > SCHEMA:
        raise StoreError(f"{path} has schema {schema}, newer than this pytest-llmperf reads "
                         f"({SCHEMA}): upgrade pytest-llmperf to use it")
    if not isinstance(document["windows"], list):
        raise StoreError(f"{path}: windows must be a list")
    return document


@dataclass(frozen=True)
class SavedRun:
    number: int
    name: str
    path: Path


def saved_runs(storage: Path) -> list[SavedRun]:
    """Every run saved under ``storage``, oldest first."""
    if not storage.is_dir():
        return []
    found = []
    for path in storage.iterdir():
        match = _SAVED.fullmatch(path.name)
        if match:
            found.append(SavedRun(int(match["number"]), match["name"], path))
    return sorted(found, key=lambda run: run.number)


def save_run(document: Mapping[str, Any], storage: Path, name: str) -> Path:
    """Keep ``document`` as the next numbered file; earlier runs, also of the same name, stay."""
    number = max((run.number for run in saved_runs(storage)), default=0) + 1
    return write_run(document, storage / f"{number:04d}_{name}.json")


def find_saved(storage: Path, name: str, count: int = 1) -> list[SavedRun]:
    """The newest ``count`` runs saved as ``name`` (``latest``: of all), oldest first."""
    runs = saved_runs(storage)
    chosen = runs if name == "latest" else [run for run in runs if run.name == name]
    if not chosen:
        known = ", ".join(sorted({run.name for run in runs})) or "none"
        raise StoreError(f"no run saved as {name!r} in {storage} (saved: {known})")
    if len(chosen) < count:
        raise StoreError(f"{len(chosen)} run(s) saved as {name!r} in {storage}, {count} asked "
                         f"for: save {count - len(chosen)} more with --llmperf-save {name}")
    return chosen[-count:]


def describe_saved(runs: Iterable[SavedRun]) -> list[list[str]]:
    """Rows for a listing: file, name, date, commit, windows; unreadable files say why."""
    rows = []
    for run in runs:
        try:
            document = load_run(run.path)
        except StoreError as exc:
            rows.append([run.path.name, run.name, "-", "-", f"unreadable: {exc}"])
            continue
        fingerprint = document["fingerprint"]
        rows.append([run.path.name, run.name, str(document["created"]),
                     str(fingerprint.get("git_commit", "-")), str(len(document["windows"]))])
    return rows

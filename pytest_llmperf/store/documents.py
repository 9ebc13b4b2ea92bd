"""The result store: one JSON document per run, written atomically, read back only when whole.

A document (:class:`RunDocument`) holds a ``schema`` version, the run's ``fingerprint``
(hardware, software, the thresholds file; see ``observe.host.host_fingerprint``), every
measured window as its test recorded it (aggregates for readers, verdicts, comparison, server
and resource figures, and the raw per-request records the numbers are recomputed from), and the
run's sweeps and searches (:mod:`pytest_llmperf.results.recorded`).  Saved runs live in a
storage directory (``.llmperf/`` by default), one file per run named ``NNNN_NAME.json`` so that
saving never replaces an earlier run.

A file that cannot be read, is not JSON (a truncated write), is not a run document, has a newer
schema than this plugin reads, or holds a field it cannot use is refused with
:class:`StoreError` naming the file (and the field).  Schema 1 documents (written before the
result records were typed) are read by :mod:`pytest_llmperf.store.schema1`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError
from pytest_llmperf.store.run_document import SCHEMA, RunDocument

__all__ = ["SCHEMA", "RunDocument", "SavedRun", "StoreError", "describe_saved", "find_saved",
           "load_run", "save_run", "saved_runs", "write_atomic", "write_run"]

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


def write_run(document: RunDocument, path: Path) -> Path:
    write_atomic(path, json.dumps(document.to_json(), indent=1, sort_keys=True) + "\n")
    return path


def load_run(path: Path) -> RunDocument:
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
    try:
        if schema == 1:
            from pytest_llmperf.store.schema1 import read_schema1

            return read_schema1(Fields(document, path.name))
        return RunDocument.from_json(Fields(document, path.name))
    except JSONDecodeError as exc:
        raise StoreError(f"{path}: {exc}") from None


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


def save_run(document: RunDocument, storage: Path, name: str) -> Path:
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
        rows.append([run.path.name, run.name, document.created,
                     str(document.fingerprint.get("git_commit", "-")),
                     str(len(document.windows))])
    return rows

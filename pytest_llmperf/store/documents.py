"""The result store: one JSON document per run, written atomically, read back only when whole.

A document (:class:`RunDocument`) holds a ``schema`` version, the run's ``fingerprint``
(hardware, software, the thresholds file; see ``observe.host.host_fingerprint``), every
measured window as its test recorded it (aggregates for readers, verdicts, comparison, server
and resource figures, and the raw per-request records the numbers are recomputed from), and the
run's sweeps and searches (:mod:`pytest_llmperf.results.recorded`).  Saved runs live in a
storage directory (``.llmperf/`` by default), one file per run named ``NNNN_NAME.json`` (more
digits past 9999) so that saving never replaces an earlier run, also when several sessions save
into one directory at once (:func:`save_run`).  Documents are strict JSON: a non-finite number
is written as the text ``inf``, ``-inf`` or ``nan``.

A file that cannot be read, is not JSON (a truncated write), is not a run document, has a newer
schema than this plugin reads, or holds a field it cannot use is refused with
:class:`StoreError` naming the file (and the field).  Schema 1 documents (written before the
result records were typed) are read by :mod:`pytest_llmperf.store.schema1`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError, json_number, strict_json
from pytest_llmperf.store.checks import check_raw_document
from pytest_llmperf.store.run_document import SCHEMA, RunDocument
from pytest_llmperf.store.writing import create_new, write_atomic

__all__ = ["SCHEMA", "RunDocument", "SavedRun", "StoreError", "describe_saved", "find_saved",
           "load_run", "save_run", "saved_runs", "write_atomic", "write_run"]

# Four digits at least, more past run 9999 (sorted by the number, not the name).
_SAVED = re.compile(r"(?P<number>\d{4,})_(?P<name>[A-Za-z0-9._-]+)\.json")
_REQUIRED = ("schema", "created", "fingerprint", "windows")
# What a save may try before it gives up: other sessions saving into the same directory
# take a number each; this many at once is no longer a race but a fault.
_SAVE_TRIES = 1000
# The errors a malformed document can raise in the typed readers, beyond JSONDecodeError;
# each becomes a StoreError naming the file.
_DECODE_ERRORS = (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError)


class StoreError(ValueError):
    """A stored run that cannot be used; the message names the file."""


def document_text(document: RunDocument) -> str:
    """The document as strict JSON (non-finite numbers as text, see json_number), indented
    for a reader, with each stored request on one line and every list of plain values (chunk
    times, timelines) on one line: written one number a line, a window of 64 requests took
    several thousand lines."""
    folded: list[str] = []
    mark = f"@@llmperf-{secrets.token_hex(8)}-"  # no stored text can hold it by chance

    def fold(value: object, key: str = "") -> object:
        if isinstance(value, dict):
            return {name: fold(item, name) for name, item in value.items()}
        if not isinstance(value, list):
            return value
        if key == "records":
            text = ",\n".join(json.dumps(record, sort_keys=True, allow_nan=False,
                                          separators=(",", ":")) for record in value)
            folded.append(f"[\n{text}\n]" if text else "[]")
        elif all(not isinstance(item, (dict, list)) for item in value):
            folded.append(json.dumps(value, allow_nan=False, separators=(",", ":")))
        else:
            return [fold(item) for item in value]
        return f"{mark}{len(folded) - 1}@@"

    text = json.dumps(fold(strict_json(document.to_json())), indent=1, sort_keys=True,
                      allow_nan=False)
    return re.sub(f'"{re.escape(mark)}(\\d+)@@"', lambda m: folded[int(m[1])], text) + "\n"


def write_run(document: RunDocument, path: Path) -> Path:
    write_atomic(path, document_text(document))
    return path


def _constant(name: str) -> object:
    """``Infinity``, ``-Infinity``, ``NaN`` (files written before strict JSON) read as the
    text a document keeps them as now."""
    return json_number(float(name))


def _float(text: str) -> object:
    """``1e999`` is an infinite number written another way: the same text form."""
    return json_number(float(text))


def load_run(path: Path) -> RunDocument:
    """A stored run, whole and every window measurable, or :class:`StoreError` saying what is
    wrong with which file (and, where it can be told, which field)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot read stored run {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise StoreError(f"stored run {path} is not UTF-8 text") from None
    try:
        document = json.loads(text, parse_constant=_constant, parse_float=_float)
    except (ValueError, RecursionError) as exc:
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
        check_raw_document(document)
        if schema == 1:
            from pytest_llmperf.store.schema1 import read_schema1

            run = read_schema1(Fields(document, path.name))
        else:
            run = RunDocument.from_json(Fields(document, path.name))
    except JSONDecodeError as exc:
        raise StoreError(f"{path}: {exc}") from None
    except _DECODE_ERRORS as exc:  # a field no reader names: say what, and in which file
        raise StoreError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    _check_measurable(run, path)
    return run


def _check_measurable(run: RunDocument, path: Path) -> None:
    """Every window's metrics, computed now: a stored window whose numbers cannot be computed
    fails when it is read, not when a comparison needs it after an hour of load."""
    for index, recorded in enumerate(run.windows):
        try:
            recorded.window.metrics  # noqa: B018 (cached: the comparison reuses them)
            recorded.window.errors  # noqa: B018 (reads every failed request's kind)
        except _DECODE_ERRORS as exc:
            raise StoreError(f"{path}: windows[{index}] ({recorded.provenance.nodeid}) cannot "
                             f"be measured ({type(exc).__name__}: {exc})") from None


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
    return sorted(found, key=lambda run: (run.number, run.name))


def save_run(document: RunDocument, storage: Path, name: str) -> Path:
    """Keep ``document`` as the next numbered file; earlier runs, also of the same name, stay.

    Sessions saving into one directory at once each get a number of their own: the number is
    picked under a lock on the directory, and the file is created only where no file of that
    name exists (a writer that does not lock still never loses a run: the next number is
    tried)."""
    import fcntl

    text = document_text(document)
    storage.mkdir(parents=True, exist_ok=True)
    with open(storage / ".save.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            number = _newest(storage) + 1
            for _ in range(_SAVE_TRIES):
                path = storage / f"{number:04d}_{name}.json"
                if create_new(path, text):
                    return path
                number = max(number, _newest(storage)) + 1
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    raise StoreError(f"cannot save run {name!r} in {storage}: {_SAVE_TRIES} numbers in a row "
                     "were taken")


def _newest(storage: Path) -> int:
    return max((run.number for run in saved_runs(storage)), default=0)


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

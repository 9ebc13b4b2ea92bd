"""Checks of a stored run's raw JSON that the typed readers cannot make precisely: numbers out
of range anywhere, each stored request's fields (the requests are decoded in bulk, by
:mod:`pytest_llmperf.results.record_codec`, without a path per field), and a sweep's calls.

Each problem is a :class:`~pytest_llmperf.results.jsonfields.JSONDecodeError` naming the field
(``windows[2].window.records[7].end_us: expected a whole number, got 'inf'``), so a bad
baseline is refused before any server starts, never with an OverflowError after the load.
"""

from __future__ import annotations

from collections.abc import Iterator

from pytest_llmperf.results.errors import ERROR_KINDS
from pytest_llmperf.results.jsonfields import LARGEST_INTEGER, JSONDecodeError
from pytest_llmperf.results.records import TokenSource

__all__ = ["check_raw_document"]

# A stored request's fields (record_codec.encode_records): required whole numbers, optional
# ones (null or absent), texts and their allowed values.
_REQUIRED_INTEGERS = ("id", "send_us", "end_us", "output_tokens")
_OPTIONAL_INTEGERS = ("input_tokens", "scheduled_us", "max_tokens", "queued_us",
                      "cached_tokens", "dataset_input_tokens", "reasoning_tokens",
                      "reasoning_chunks", "answer_start_us", "answer_end_us")
_SOURCES = tuple(source.value for source in TokenSource)
_TEXTS: dict[str, tuple[str, ...] | None] = {
    "finish_reason": None, "error": None, "error_kind": ERROR_KINDS,
    "output_token_source": _SOURCES, "input_token_source": _SOURCES,
    "reasoning_token_source": _SOURCES,
}


def check_raw_document(document: object) -> None:
    """Raise JSONDecodeError at the first integer too large to be a stored figure, or the
    first stored request with a field of the wrong kind."""
    for path, value in _walk(document):
        if isinstance(value, int) and not isinstance(value, bool) \
                and abs(value) > LARGEST_INTEGER:
            raise JSONDecodeError(f"{path}: a whole number of {len(str(value))} digits is out "
                                  "of range for a stored figure")
        if path.endswith(".records") and isinstance(value, list):
            for index, record in enumerate(value):
                if isinstance(record, dict):
                    _check_record(record, f"{path}[{index}]")
        if path.endswith(".calls") and isinstance(value, list):  # a sweep's windows, by call
            for index, call in enumerate(value):
                if call is not None:
                    _whole(call, f"{path}[{index}]")


def _walk(document: object) -> Iterator[tuple[str, object]]:
    """Every value with its path (a stack, not recursion: nesting cannot overflow it)."""
    stack: list[tuple[str, object]] = [("", document)]
    while stack:
        path, value = stack.pop()
        yield path, value
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}" if path else str(key), item)
                         for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item)
                         for index, item in reversed(list(enumerate(value))))


def _check_record(record: dict[str, object], path: str) -> None:
    for key in _REQUIRED_INTEGERS:
        if key not in record:
            raise JSONDecodeError(f"{path}: {key} is missing")
        _whole(record[key], f"{path}.{key}")
    for key in _OPTIONAL_INTEGERS:
        if record.get(key) is not None:
            _whole(record[key], f"{path}.{key}")
    chunks = record.get("chunk_us")
    if not isinstance(chunks, list):
        raise JSONDecodeError(f"{path}.chunk_us: expected a list of whole numbers, got "
                              f"{_shown(chunks)}")
    for index, chunk in enumerate(chunks):
        _whole(chunk, f"{path}.chunk_us[{index}]")
    for key, allowed in _TEXTS.items():
        value = record.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise JSONDecodeError(f"{path}.{key}: expected text or null, got {_shown(value)}")
        if allowed is not None and value not in allowed:
            raise JSONDecodeError(f"{path}.{key}: {value!r} is not one of "
                                  f"{', '.join(allowed)}")
    if not isinstance(record.get("resent", False), bool):
        raise JSONDecodeError(f"{path}.resent: expected true or false, got "
                              f"{_shown(record['resent'])}")


def _whole(value: object, path: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise JSONDecodeError(f"{path}: expected a whole number, got {_shown(value)}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

"""A GGUF file's key-value metadata (the header before the tensors), read without loading the
model: what an engine that registers a local file needs to be told about it (Xinference: the
chat template, the context length, the stop tokens).

The format (GGUF v2 and v3, little-endian): magic ``GGUF``, version (u32), tensor count and
key-value count (u64 each), then each key (a u64-length UTF-8 string), its value type (u32)
and value; arrays carry their element type and a u64 count.  Only the keys asked for are kept;
an array (the tokenizer's vocabulary) is read past unless asked for.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["GGUFError", "read_gguf_metadata"]

# Value types: struct formats of the fixed-size ones; 8 is a string, 9 an array.
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
          12: "d"}
_STRING, _ARRAY = 8, 9
_MOST_KEYS = 100_000  # a header claiming more is corrupt


class GGUFError(ValueError):
    """Not a GGUF file, or one cut short."""


def read_gguf_metadata(path: Path, keys: Collection[str]) -> dict[str, Any]:
    """The values of ``keys`` that ``path``'s header holds (strings, numbers, lists)."""
    with path.open("rb") as file:
        if file.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file (no GGUF magic)")
        version = _read(file, "I")
        if version not in (2, 3):
            raise GGUFError(f"{path}: GGUF version {version} is not read (2 and 3 are)")
        _read(file, "Q")  # tensors
        count = _read(file, "Q")
        if count > _MOST_KEYS:
            raise GGUFError(f"{path}: {count} metadata keys: the header is corrupt")
        found: dict[str, Any] = {}
        for _ in range(count):
            key = _string(file)
            kind = _read(file, "I")
            wanted = key in keys
            value = _value(file, kind, keep=wanted)
            if wanted:
                found[key] = value
        return found


def _read(file: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    raw = file.read(size)
    if len(raw) != size:
        raise GGUFError("the GGUF header ends early")
    return struct.unpack("<" + fmt, raw)[0]


def _string(file: BinaryIO, keep: bool = True) -> str:
    length = _read(file, "Q")
    if not keep:
        file.seek(length, 1)
        return ""
    raw = file.read(length)
    if len(raw) != length:
        raise GGUFError("the GGUF header ends early")
    return raw.decode("utf-8", "replace")


def _value(file: BinaryIO, kind: int, *, keep: bool) -> Any:
    if kind in _FIXED:
        return _read(file, _FIXED[kind])
    if kind == _STRING:
        return _string(file, keep)
    if kind == _ARRAY:
        element, count = _read(file, "I"), _read(file, "Q")
        if not keep and element in _FIXED:  # numbers: skipped in one seek
            file.seek(struct.calcsize("<" + _FIXED[element]) * count, 1)
            return None
        values = [_value(file, element, keep=keep) for _ in range(count)]
        return values if keep else None
    raise GGUFError(f"unknown GGUF value type {kind}")

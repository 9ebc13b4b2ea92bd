"""Reading a JSON object back into a typed record: each field checked for its type, and a wrong
one named by its path (``windows[3].load.users: expected a whole number, got 'x'``).

The result records' ``from_json`` read through :class:`Fields`, so a hand-edited or truncated
result document fails with the place it went wrong instead of an ``AttributeError`` in a
report.  Writing needs no helper: ``to_json`` builds plain dicts of JSON values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

__all__ = ["Fields", "JSONDecodeError", "JSONObject", "json_number", "rounded"]

# What ``json.loads`` gives and ``json.dumps`` takes: the one place the package spells it.
JSONObject = dict[str, object]
T = TypeVar("T")


class JSONDecodeError(ValueError):
    """A JSON value that does not hold what a record needs; the message names its path."""


def rounded(value: float | None) -> float | None:
    """A figure as documents keep it: 4 decimals (a reader's number, not a measurement)."""
    return None if value is None else round(value, 4)


def json_number(value: float | None) -> float | str | None:
    """A float as JSON can hold it: ``inf`` and ``nan`` as text (json would write Infinity)."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else ("-inf" if value < 0 else "nan")


class Fields:
    """Typed reads of one JSON object; ``path`` names it in errors."""

    def __init__(self, value: object, path: str = "document") -> None:
        if not isinstance(value, dict):
            raise JSONDecodeError(f"{path}: expected an object, got {_shown(value)}")
        self._data: Mapping[str, object] = value
        self.path = path

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def as_dict(self) -> JSONObject:
        """The object as it is (for open-ended fields such as a fingerprint)."""
        return dict(self._data)

    def names(self) -> list[str]:
        return list(self._data)

    def raw(self, key: str) -> object:
        """The value as it is (None when absent)."""
        return self._data.get(key)

    def _get(self, key: str, default: object, required: bool) -> object:
        if key in self._data:
            return self._data[key]
        if required:
            raise JSONDecodeError(f"{self.path}: {key} is missing")
        return default

    def _fail(self, key: str, expected: str, value: object) -> JSONDecodeError:
        return JSONDecodeError(f"{self.path}.{key}: expected {expected}, got {_shown(value)}")

    def text(self, key: str) -> str:
        value = self._get(key, None, True)
        if not isinstance(value, str):
            raise self._fail(key, "text", value)
        return value

    def text_or_none(self, key: str) -> str | None:
        value = self._get(key, None, False)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "text or null", value)
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        value = self._get(key, default, default is None)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, "a whole number", value)
        return value

    def integer_or_none(self, key: str) -> int | None:
        value = self._get(key, None, False)
        return None if value is None else self.integer(key)

    def number(self, key: str, default: float | None = None) -> float:
        value = self._get(key, default, default is None)
        if value in ("inf", "-inf", "nan"):
            return float(str(value))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._fail(key, "a number", value)
        return float(value)

    def number_or_none(self, key: str) -> float | None:
        value = self._get(key, None, False)
        return None if value is None else self.number(key)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def obj(self, key: str) -> Fields:
        return Fields(self._get(key, None, True), f"{self.path}.{key}")

    def obj_or_none(self, key: str) -> Fields | None:
        value = self._get(key, None, False)
        return None if value is None else Fields(value, f"{self.path}.{key}")

    def items(self, key: str, *, required: bool = False) -> Iterator[tuple[str, object]]:
        """The raw values of a list field, each with its path (absent: none, unless
        ``required``)."""
        value = self._get(key, [], required)
        if not isinstance(value, list):
            raise self._fail(key, "a list", value)
        for index, item in enumerate(value):
            yield f"{self.path}.{key}[{index}]", item

    def objects(self, key: str) -> Iterator[Fields]:
        """A list of objects (absent: none)."""
        for path, item in self.items(key):
            yield Fields(item, path)

    def each(self, key: str, read: Callable[[Fields], T]) -> tuple[T, ...]:
        return tuple(read(item) for item in self.objects(key))

    def texts(self, key: str) -> tuple[str, ...]:
        found = []
        for path, item in self.items(key):
            if not isinstance(item, str):
                raise JSONDecodeError(f"{path}: expected text, got {_shown(item)}")
            found.append(item)
        return tuple(found)

    def numbers(self, key: str) -> tuple[float | None, ...]:
        """A list of numbers, null where a reading was missing."""
        found: list[float | None] = []
        for path, item in self.items(key):
            if item is not None and (not isinstance(item, (int, float)) or isinstance(item, bool)):
                raise JSONDecodeError(f"{path}: expected a number or null, got {_shown(item)}")
            found.append(None if item is None else float(item))
        return tuple(found)

    def number_map(self, key: str) -> dict[str, float]:
        """An object of numbers (absent: empty); null values are left out."""
        value = self._get(key, {}, False)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._fail(key, "an object of numbers", value)
        found = {}
        for name, item in value.items():
            if item is None:
                continue
            if not isinstance(item, (int, float)) or isinstance(item, bool):
                raise JSONDecodeError(f"{self.path}.{key}.{name}: expected a number, got "
                                      f"{_shown(item)}")
            found[str(name)] = float(item)
        return found

    def number_map_loose(self) -> dict[str, float]:
        """This object's own number fields, whatever else it holds."""
        return {key: float(value) for key, value in self._data.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)}

    def scalar_map(self, key: str) -> dict[str, str | int | float | bool | None]:
        """An object of plain values (text, numbers, true/false, null)."""
        value = self._get(key, {}, False)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._fail(key, "an object", value)
        found: dict[str, str | int | float | bool | None] = {}
        for name, item in value.items():
            if item is not None and not isinstance(item, (str, int, float, bool)):
                raise JSONDecodeError(f"{self.path}.{key}.{name}: expected a plain value, got "
                                      f"{_shown(item)}")
            found[str(name)] = item
        return found


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

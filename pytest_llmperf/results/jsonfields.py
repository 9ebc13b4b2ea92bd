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

__all__ = ["LARGEST_INTEGER", "Fields", "JSONDecodeError", "JSONObject", "json_number",
           "read_number", "rounded", "strict_json"]

# What ``json.loads`` gives and ``json.dumps`` takes: the one place the package spells it.
JSONObject = dict[str, object]
T = TypeVar("T")


class JSONDecodeError(ValueError):
    """A JSON value that does not hold what a record needs; the message names its path."""


def rounded(value: float | None) -> float | None:
    """A figure as documents keep it: 4 decimals (a reader's number, not a measurement)."""
    return None if value is None else round(value, 4)


def json_number(value: float | None) -> float | str | None:
    """A float as JSON can hold it: ``inf``, ``-inf`` and ``nan`` as text (json would write
    Infinity, which strict JSON readers refuse).  Every number reader of :class:`Fields`
    takes the text back."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else ("-inf" if value < 0 else "nan")


def strict_json(value: object) -> object:
    """``value`` (plain JSON values) with every non-finite float as :func:`json_number` writes
    it, so that ``json.dumps(..., allow_nan=False)`` takes it."""
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


# The non-finite numbers as documents write them (json_number).
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
# The largest whole number a document holds (nanoseconds since 1970 fit 2**63 until 2262);
# beyond it a figure is corrupt, and float() of it would overflow.
LARGEST_INTEGER = 2**63


def read_number(value: object) -> float | None:
    """A JSON number (or the text form of a non-finite one) as a float; None when ``value``
    is no number.  OverflowError for an integer too large for a float."""
    if isinstance(value, str):
        return _NON_FINITE.get(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return float(value)


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
        if abs(value) > LARGEST_INTEGER:
            raise self._fail(key, "a whole number of at most 19 digits", value)
        return value

    def integer_or_none(self, key: str) -> int | None:
        value = self._get(key, None, False)
        return None if value is None else self.integer(key)

    def number(self, key: str, default: float | None = None) -> float:
        return _number(self._get(key, default, default is None), f"{self.path}.{key}")

    def number_or_none(self, key: str) -> float | None:
        value = self._get(key, None, False)
        return None if value is None else self.number(key)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def flag_or_none(self, key: str) -> bool | None:
        value = self._get(key, None, False)
        return None if value is None else self.flag(key)

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
            found.append(None if item is None else _number(item, path, "a number or null"))
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
            if item is not None:
                found[str(name)] = _number(item, f"{self.path}.{key}.{name}")
        return found

    def number_map_loose(self) -> dict[str, float]:
        """This object's own number fields, whatever else it holds (non-finite ones too, in
        their text form)."""
        found = {}
        for key, value in self._data.items():
            if (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
                    isinstance(value, str) and value in _NON_FINITE):
                found[key] = _number(value, f"{self.path}.{key}")
        return found

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


def _number(value: object, path: str, expected: str = "a number") -> float:
    try:
        number = read_number(value)
    except OverflowError:
        raise JSONDecodeError(f"{path}: {_shown(value)} is too large for a number") from None
    if number is None:
        raise JSONDecodeError(f"{path}: expected {expected}, got {_shown(value)}")
    return number


def _shown(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python will print
        return "a whole number of thousands of digits"
    return text if len(text) <= 60 else text[:57] + "..."

"""JSON of dataset files as json.loads reads it, minus its two exits without a position: an
integer of more digits than Python converts, and nesting deeper than the reader follows."""

from __future__ import annotations

import json
import re

__all__ = ["DECODER", "deepest", "loads", "too_deep", "too_deep_message"]

# A JSON string (skipped whole), or a bracket that opens or closes a level.
_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[{]|[\]}]', re.DOTALL)


def _integer(digits: str) -> int | float:
    try:
        return int(digits)
    except ValueError:
        return float(digits)


# An integer of over 4300 digits (where Python's int() stops) reads as an infinite float
# instead of raising a bare ValueError with no line: where it matters (an answer length) it is
# refused as any wrong number is, with its line.  Nesting too deep still raises RecursionError:
# see too_deep.
DECODER = json.JSONDecoder(parse_int=_integer)


def loads(text: str) -> object:
    """``json.loads(text)`` with :data:`DECODER`'s integers."""
    return DECODER.decode(text)


def deepest(text: str, start: int = 0) -> tuple[int, int]:
    """How deep ``text[start:]`` nests (``start`` outside any string) and where it is deepest.
    Only on the error path: it scans the whole text."""
    depth = most = at = 0
    for match in _NESTING.finditer(text, start):
        opening = match.group()[0]
        if opening in "[{":
            depth += 1
            if depth > most:
                most, at = depth, match.start()
        elif opening in "]}":
            depth -= 1
    return most, at


def too_deep_message(place: str, depth: int) -> str:
    return (f"{place}: arrays or objects nested {depth} levels deep, deeper than the JSON "
            "reader follows; a dataset entry needs a few levels")


def too_deep(where: str, text: str, *, lines: bool) -> str:
    """The message for ``text`` nested past what json.loads follows, at ``where:line:column``
    of its deepest point (``where:column`` for one line of a JSONL file, ``lines`` False)."""
    depth, at = deepest(text)
    column = at - text.rfind("\n", 0, at)
    place = f"{where}:{text.count(chr(10), 0, at) + 1}:{column}" if lines else \
        f"{where}:{column}"
    return too_deep_message(place, depth)

"""JSON of dataset files as json.loads reads it, minus its two exits without a position: an
integer of more digits than Python converts, and nesting deeper than the reader follows."""

from __future__ import annotations

import json
import re

__all__ = ["loads", "too_deep"]

# A JSON string (skipped whole), or a bracket that opens or closes a level.
_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[{]|[\]}]', re.DOTALL)


def loads(text: str) -> object:
    """``json.loads(text)``, but an integer of over 4300 digits (where Python's int() stops)
    reads as an infinite float instead of raising a bare ValueError with no line: where it
    matters (an answer length) it is refused as any wrong number is, with its line.  Nesting
    too deep still raises RecursionError: see :func:`too_deep`."""
    return json.loads(text, parse_int=_integer)


def _integer(digits: str) -> int | float:
    try:
        return int(digits)
    except ValueError:
        return float(digits)


def too_deep(where: str, text: str, *, lines: bool) -> str:
    """The message for ``text`` nested past what json.loads follows, at ``where:line:column``
    of its deepest point (``where:column`` for one line of a JSONL file, ``lines`` False).
    Only on this error path: it scans the whole text."""
    depth = deepest = at = 0
    for match in _NESTING.finditer(text):
        opening = match.group()[0]
        if opening in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, match.start()
        elif opening in "]}":
            depth -= 1
    column = at - text.rfind("\n", 0, at)
    place = f"{where}:{text.count(chr(10), 0, at) + 1}:{column}" if lines else \
        f"{where}:{column}"
    return (f"{place}: arrays or objects nested {deepest} levels deep, deeper than the JSON "
            "reader follows; a dataset entry needs a few levels")

"""Structured output: whether an answer is JSON that the request's JSON schema accepts.

Checked once the answer has ended (never between reads), with the ``jsonschema`` package's
validator for the schema's own draft.  The answer's text is kept only for such requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pytest_llmperf.clients.base import short

__all__ = ["schema_problem"]


def schema_problem(text: str, schema: Mapping[str, Any]) -> str | None:
    """Why ``text`` is not an answer ``schema`` accepts (None: it is)."""
    import jsonschema  # only for structured requests

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"the answer is not JSON ({exc.msg} at character {exc.pos}): {short(text)}"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "the top level"
    return f"the answer does not match the schema at {where}: {short(error.message)}"

"""The result store's document: one run, where it ran, and everything its tests recorded
(schema 2; :mod:`pytest_llmperf.store.schema1` reads the schema before it)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_llmperf.results.jsonfields import Fields, JSONObject
from pytest_llmperf.results.recorded import RecordedSearch, RecordedWindow, search_from_json

__all__ = ["SCHEMA", "RunDocument"]

SCHEMA = 2


@dataclass(frozen=True)
class RunDocument:
    """One run: where it ran, and everything its tests recorded."""

    created: str  # ISO 8601, UTC
    # Open-ended (observe.host.host_fingerprint, and whatever pytest_llmperf_fingerprint hooks
    # add): plain JSON values by name.
    fingerprint: Mapping[str, object]
    windows: tuple[RecordedWindow, ...]
    searches: tuple[RecordedSearch, ...] = ()
    schema: int = SCHEMA  # the schema it was read from; written always as SCHEMA
    # What a pytest_llmperf_result_document hook added, kept as it came.
    extra: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def new(cls, windows: Sequence[RecordedWindow], fingerprint: Mapping[str, object],
            searches: Sequence[RecordedSearch] = ()) -> RunDocument:
        """A document of this run, created now."""
        return cls(datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                   dict(fingerprint), tuple(windows), tuple(searches))

    def to_json(self) -> JSONObject:
        return {"schema": SCHEMA, "created": self.created, "fingerprint": dict(self.fingerprint),
                "windows": [window.to_json() for window in self.windows],
                "searches": [search.to_json() for search in self.searches],
                **({"extra": dict(self.extra)} if self.extra else {})}

    @classmethod
    def from_json(cls, fields: Fields) -> RunDocument:
        """A schema 2 document (:func:`load_run` sends older ones to their reader)."""
        extra = fields.raw("extra")
        return cls(fields.text("created"), fields.obj("fingerprint").as_dict(),
                   fields.each("windows", RecordedWindow.from_json),
                   fields.each("searches", search_from_json), fields.integer("schema"),
                   extra if isinstance(extra, dict) else {})

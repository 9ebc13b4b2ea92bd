"""The result store's document: one run, where it ran (one host, or several: ``hosts``), and
everything its tests recorded (schema 2; :mod:`pytest_llmperf.store.schema1` reads the schema
before it)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_llmperf.results.jsonfields import Fields, JSONObject
from pytest_llmperf.results.recorded import RecordedSearch, RecordedWindow, search_from_json
from pytest_llmperf.results.unmeasured import UnmeasuredTest

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
    # A session over several hosts: each other host's fingerprint by its label (the windows'
    # Provenance.host); ``fingerprint`` is the host the session ran on.
    hosts: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    # Tests that measured nothing (skipped, or failed before a window), and why; written only
    # when there are some.
    unmeasured: tuple[UnmeasuredTest, ...] = ()

    @classmethod
    def new(cls, windows: Sequence[RecordedWindow], fingerprint: Mapping[str, object],
            searches: Sequence[RecordedSearch] = (),
            hosts: Mapping[str, Mapping[str, object]] | None = None,
            unmeasured: Sequence[UnmeasuredTest] = ()) -> RunDocument:
        """A document of this run, created now."""
        return cls(datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                   dict(fingerprint), tuple(windows), tuple(searches),
                   hosts={label: dict(facts) for label, facts in (hosts or {}).items()},
                   unmeasured=tuple(unmeasured))

    def fingerprint_of(self, host: str | None) -> Mapping[str, object] | None:
        """The fingerprint of the host labelled ``host`` (None: the session's own); None for
        a label the run does not know."""
        return self.fingerprint if host is None else self.hosts.get(host)

    @property
    def host_labels(self) -> tuple[str | None, ...]:
        """The hosts whose windows or searches the run holds, the session's own (None) first."""
        seen = {r.provenance.host for r in (*self.windows, *self.searches)}
        return tuple(sorted(seen, key=lambda label: (label is not None, label or "")))

    def to_json(self) -> JSONObject:
        return {"schema": SCHEMA, "created": self.created, "fingerprint": dict(self.fingerprint),
                **({"hosts": {k: dict(v) for k, v in self.hosts.items()}} if self.hosts else {}),
                "windows": [window.to_json() for window in self.windows],
                "searches": [search.to_json() for search in self.searches],
                **({"extra": dict(self.extra)} if self.extra else {}),
                **({"unmeasured": [test.to_json() for test in self.unmeasured]}
                   if self.unmeasured else {})}

    @classmethod
    def from_json(cls, fields: Fields) -> RunDocument:
        """A schema 2 document (:func:`load_run` sends older ones to their reader)."""
        extra = fields.raw("extra")
        hosts = fields.obj_or_none("hosts")
        return cls(fields.text("created"), fields.obj("fingerprint").as_dict(),
                   fields.each("windows", RecordedWindow.from_json),
                   fields.each("searches", search_from_json), fields.integer("schema"),
                   extra if isinstance(extra, dict) else {},
                   {} if hosts is None else {label: hosts.obj(label).as_dict()
                                             for label in hosts.names()},
                   fields.each("unmeasured", UnmeasuredTest.from_json))

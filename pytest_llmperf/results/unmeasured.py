"""A test of the run that measured nothing: skipped (the model would not fit in GPU memory, the
engine cannot serve it) or failed before its first window (the server did not start).  A run
document keeps them so that a comparison of configurations can say why one has no figures."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmperf.results.jsonfields import Fields, JSONObject

__all__ = ["UnmeasuredTest"]


@dataclass(frozen=True)
class UnmeasuredTest:
    nodeid: str
    outcome: str  # "skipped" or "failed"
    reason: str  # the skip reason, or the failure's last line (longrepr)
    when: str = "setup"  # the phase that ended it: setup, call
    host: str | None = None  # as Provenance.host: None for the session's own host
    backend: str | None = None  # the matrix cell, where the test id names one
    model: str | None = None

    @property
    def target(self) -> tuple[str, str] | None:
        """(backend, model): as recorded, else read from the test id's first parameter
        (``test_x[vllm-qwen72b-gptq]``: backends have no dash); None when it names none."""
        if self.backend and self.model:
            return self.backend, self.model
        if not self.nodeid.endswith("]") or "[" not in self.nodeid:
            return None
        params = self.nodeid[self.nodeid.index("[") + 1:-1].split("@", 1)[0]
        backend, dash, model = params.partition("-")
        return (backend, model) if dash and backend and model else None

    def to_json(self) -> JSONObject:
        return {"nodeid": self.nodeid, "outcome": self.outcome, "reason": self.reason,
                "when": self.when, "host": self.host, "backend": self.backend,
                "model": self.model}

    @classmethod
    def from_json(cls, fields: Fields) -> UnmeasuredTest:
        return cls(fields.text("nodeid"), fields.text("outcome"),
                   fields.text_or_none("reason") or "", fields.text_or_none("when") or "setup",
                   fields.text_or_none("host"), fields.text_or_none("backend"),
                   fields.text_or_none("model"))

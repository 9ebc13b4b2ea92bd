"""Which engine and model a result was measured on: a plain record (the live server, its
client and its process are the engine's business, :class:`pytest_llmperf.engines.base.ServedModel`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmperf.results.jsonfields import Fields, JSONObject

__all__ = ["ServedInfo"]


@dataclass(frozen=True)
class ServedInfo:
    backend: str
    model: str  # the alias or name the user gave
    engine: str  # engine and version, e.g. "xllamacpp 2026.10.11549"
    model_file: str | None = None
    model_sha256: str | None = None
    # How the engine served it, where the engine said (None: not recorded); written only when
    # known, so documents without them read and write as before.
    tensor_parallel: int | None = None
    quantization: str | None = None  # "gptq", "awq", "Q4_1", "fp8", ...
    engine_args: tuple[str, ...] = ()  # the launch arguments that shape performance
    startup_s: float | None = None  # launch to ready; None: attached, or not recorded
    first_ttft_ms: float | None = None  # TTFT of the first request once ready (launched)

    @property
    def description(self) -> str:
        """``smollm2-135m on llamacpp (xllamacpp 2026.10.11549)``."""
        return f"{self.model} on {self.backend} ({self.engine})"

    @property
    def target(self) -> str:
        """``llamacpp-smollm2-135m``, as in the test ids."""
        return f"{self.backend}-{self.model}"

    def to_json(self) -> JSONObject:
        optional: JSONObject = {}
        if self.tensor_parallel is not None:
            optional["tensor_parallel"] = self.tensor_parallel
        if self.quantization is not None:
            optional["quantization"] = self.quantization
        if self.engine_args:
            optional["engine_args"] = list(self.engine_args)
        if self.startup_s is not None:
            optional["startup_s"] = round(self.startup_s, 3)
        if self.first_ttft_ms is not None:
            optional["first_ttft_ms"] = round(self.first_ttft_ms, 3)
        return {"backend": self.backend, "model": self.model, "engine": self.engine,
                "model_file": self.model_file, "model_sha256": self.model_sha256, **optional}

    @classmethod
    def from_json(cls, fields: Fields) -> ServedInfo:
        return cls(fields.text("backend"), fields.text("model"), fields.text("engine"),
                   fields.text_or_none("model_file"), fields.text_or_none("model_sha256"),
                   fields.integer_or_none("tensor_parallel"),
                   fields.text_or_none("quantization"), fields.texts("engine_args"),
                   fields.number_or_none("startup_s"), fields.number_or_none("first_ttft_ms"))

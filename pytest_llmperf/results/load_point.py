"""One load of a sweep or a search, as its table row and chart point: the figures that show how
the server took that load.  Made from the load's measured window, once."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmperf.results.jsonfields import Fields, JSONObject, rounded
from pytest_llmperf.results.window import WindowResult

__all__ = ["LoadPoint"]


@dataclass(frozen=True)
class LoadPoint:
    load: float  # users, req/s, or (a prefill sweep) input tokens: the axis of the chart
    label: str  # "4 users", "2 req/s poisson", "512 input tokens, 1 user"
    requests: int
    duration_s: float
    ttft_ms_p95: float | None = None
    ttft_ms_median: float | None = None
    tpot_ms_p95: float | None = None
    decode_tokens_per_s_mean: float | None = None
    output_token_throughput: float | None = None
    request_throughput: float | None = None
    error_rate: float | None = None
    cache_hit_rate: float | None = None  # where the server said
    overload: str | None = None
    stopped_early: str | None = None

    @classmethod
    def of(cls, window: WindowResult, *, load: float | None = None,
           label: str | None = None) -> LoadPoint:
        """The point of ``window``; ``load`` and ``label`` default to its load shape's."""
        value = window.metrics.value
        return cls(
            load=window.shape.load if load is None else load,
            label=window.shape.label if label is None else label,
            requests=window.requests,
            duration_s=window.run.duration_s,
            ttft_ms_p95=value("ttft_ms", "p95"),
            ttft_ms_median=value("ttft_ms", "median"),
            tpot_ms_p95=value("tpot_ms", "p95"),
            decode_tokens_per_s_mean=value("decode_tokens_per_s", "mean"),
            output_token_throughput=value("output_token_throughput"),
            request_throughput=value("request_throughput"),
            error_rate=value("error_rate"),
            cache_hit_rate=value("cache_hit_rate"),
            overload=window.overload,
            stopped_early=window.run.stopped_early,
        )

    def figure(self, name: str) -> float | None:
        """A figure by its field name (the chart's panels name them)."""
        value = getattr(self, name)
        return float(value) if isinstance(value, (int, float)) else None

    def to_json(self) -> JSONObject:
        return {"load": self.load, "label": self.label, "requests": self.requests,
                "duration_s": round(self.duration_s, 4),
                **{name: rounded(self.figure(name)) for name in _FIGURES},
                "overload": self.overload, "stopped_early": self.stopped_early}

    @classmethod
    def from_json(cls, fields: Fields) -> LoadPoint:
        return cls(fields.number("load"), fields.text_or_none("label") or "",
                   fields.integer("requests", 0), fields.number("duration_s", 0.0),
                   **{name: fields.number_or_none(name) for name in _FIGURES},
                   overload=fields.text_or_none("overload"),
                   stopped_early=fields.text_or_none("stopped_early"))


_FIGURES = ("ttft_ms_p95", "ttft_ms_median", "tpot_ms_p95", "decode_tokens_per_s_mean",
            "output_token_throughput", "request_throughput", "error_rate", "cache_hit_rate")

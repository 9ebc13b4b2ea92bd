"""One measured window, as a record: the load offered, every request, and what was seen around
it (the engine's own metrics, resources, the client's health, where the prompts came from).

Every figure a report shows of a window is computed here, from the requests, once: the metrics
(:func:`pytest_llmperf.results.metrics.summarize`), failures by kind, answers shorter than asked
for, the prefix cache's share, and so on.  ``to_json`` / ``from_json`` carry a window to the
pytest-xdist controller and into the result store; the metrics are recomputed from the stored
requests (to the microsecond), so a document holds each number once.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_llmperf.results.errors import error_counts, error_examples
from pytest_llmperf.results.health import Health
from pytest_llmperf.results.jsonfields import Fields, JSONObject, rounded
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.metrics import SCALARS, RunMetrics, summarize
from pytest_llmperf.results.pacing import overload
from pytest_llmperf.results.prompt_origin import PromptOrigin
from pytest_llmperf.results.record_codec import run_from_json, run_to_json
from pytest_llmperf.results.records import LoadRun
from pytest_llmperf.results.replicas import ReplicaFigures, replica_figures
from pytest_llmperf.results.resources import Resources
from pytest_llmperf.results.sequential import WindowSizing
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.server_families import ScrapedFamilies

__all__ = ["CACHE_HEAD_ALLOWANCE", "ErrorTally", "PromptCacheUse", "WindowResult"]

# Cached prompt tokens any request may have: the chat template's head before the user's text
# (SmolLM2 25, Qwen2.5 about 20, Llama 3 about 26); a longer shared system prompt is a hit.
CACHE_HEAD_ALLOWANCE = 32


@dataclass(frozen=True)
class ErrorTally:
    """The failed requests of one kind: how many, and the first one's message."""

    count: int
    example: str


@dataclass(frozen=True)
class PromptCacheUse:
    """What the server said it served from its prefix cache over a window's requests."""

    requests: int  # the completed requests it said it for
    cached_tokens: int
    prompt_tokens: int
    # Requests that took more than half their prompt, and more than CACHE_HEAD_ALLOWANCE
    # tokens, from the cache (every request shares its chat template's head).
    hits: int
    about_caching: bool  # the window's prompts are about the cache: hits are not a flaw

    @property
    def share(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def flatters(self) -> bool:
        """Hits in a window not about caching: its TTFT is flattered."""
        return bool(self.hits) and not self.about_caching


@dataclass(frozen=True)
class WindowResult:
    """One measured window (``llmperf_load`` returns one; with ``repeats`` the further windows
    of the same load, run right after it)."""

    served: ServedInfo
    shape: LoadShape
    max_tokens: int
    run: LoadRun  # the requests of the window (warm-up excluded) and its span
    # The engine's own numbers over the same window (observe.server_metrics); None: it has none.
    server_metrics: Mapping[str, float] | None = None
    server_notes: tuple[str, ...] = ()  # why some server numbers are missing
    resources: Resources | None = None  # None: no telemetry was taken
    prompts: PromptOrigin | None = None
    health: Health | None = None  # None: not watched
    repeats: tuple[WindowResult, ...] = field(default=(), compare=False)
    # A staged load's windows, one per stage (load.staged); this window is then the whole run,
    # whose observers were split by stage (no resources or engine metrics of its own).
    stages: tuple[WindowResult, ...] = field(default=(), compare=False)
    # A window sized by its SLOs (results.sequential): its looks, and why it stopped; None:
    # its size was given (or it was not judged).
    sizing: WindowSizing | None = None
    # Every family of each metrics URL over the window (results.server_families).
    server_families: tuple[ScrapedFamilies, ...] = ()

    # --- derived figures ------------------------------------------------------------------

    @functools.cached_property
    def metrics(self) -> RunMetrics:
        """Every metric of the window, its resource figures included."""
        metrics = summarize(self.run)
        # The target's cold start, held in any of its windows.
        started = {"startup_s": self.served.startup_s, "first_ttft_ms": self.served.first_ttft_ms}
        metrics = metrics.with_scalars({name: value for name, value in started.items()
                                        if value is not None})
        return metrics if self.resources is None else metrics.with_resources(
            self.resources.metrics)

    @property
    def windows(self) -> tuple[WindowResult, ...]:
        """This window and its repeats, in the order they ran."""
        return (dataclasses.replace(self, repeats=()), *self.repeats)

    @property
    def users(self) -> int:
        """The closed loop's users; for an open loop the most requests it had in flight."""
        return self.shape.users or self.run.concurrency

    @property
    def requests(self) -> int:
        return len(self.run.records)

    @property
    def overload(self) -> str | None:
        """Why an open-loop window's latencies are queueing (results.pacing); None if not."""
        return overload(self.run, self.metrics.scalars)

    @property
    def validity_marks(self) -> dict[str, tuple[str, ...]]:
        """``{"client-bound": (...limits crossed), "disturbed": (...)}``, marks earned only."""
        return {} if self.health is None else self.health.marks

    @property
    def context(self) -> str:
        """``64 requests at 4 users, smollm2-135m on llamacpp (xllamacpp 2026.10.11549)``."""
        return f"{self.requests} requests at {self.shape.label}, {self.served.description}"

    @property
    def errors(self) -> dict[str, ErrorTally]:
        """Failed requests by kind (only kinds that occurred), with the first message of each."""
        examples = error_examples(self.run.records)
        return {kind: ErrorTally(count, examples[kind])
                for kind, count in error_counts(self.run.records).items() if count}

    @property
    def approximate_counts(self) -> int:
        """Completed requests whose output count was re-tokenized from the text (no usage)."""
        return sum(bool(r.approximate_counts) for r in self.run.records if r.ok)

    @property
    def resent(self) -> int:
        """Requests sent a second time because the server had closed their pooled connection."""
        return sum(r.resent for r in self.run.records)

    @property
    def client_tokens(self) -> tuple[int, int]:
        """(input, output) tokens the client counted over completed requests, beside the
        engine's own counters."""
        done = [r for r in self.run.records if r.ok]
        return sum(r.input_tokens or 0 for r in done), sum(r.output_tokens for r in done)

    @property
    def short_answers(self) -> int:
        """Completed answers shorter than asked for: an engine that cannot ignore EOS (Ollama,
        TGI) makes per-user speed a figure over shorter answers."""
        # A structured answer ends with its object; an embeddings request generates nothing.
        return sum(r.ok and not r.schema_checked and not r.embedded_inputs
                   and r.output_tokens < (r.max_tokens or self.max_tokens)
                   for r in self.run.records)

    @property
    def reasoning_requests(self) -> int:
        """Completed answers that reasoned before they answered."""
        return sum(r.ok and r.has_reasoning for r in self.run.records)

    @property
    def prompt_cache(self) -> PromptCacheUse | None:
        """What the server said it served from its prefix cache; None where it said nothing."""
        told = [r for r in self.run.records
                if r.ok and r.cached_tokens is not None and r.input_tokens]
        if not told:
            return None
        return PromptCacheUse(
            requests=len(told),
            cached_tokens=sum(r.cached_tokens or 0 for r in told),
            prompt_tokens=sum(r.input_tokens or 0 for r in told),
            hits=sum((r.cached_tokens or 0) > max(CACHE_HEAD_ALLOWANCE, (r.input_tokens or 0) / 2)
                     for r in told),
            about_caching=self.prompts is not None and self.prompts.about_caching)

    @property
    def replicas(self) -> tuple[ReplicaFigures, ...]:
        """Each replica's share of the window (empty: one server served it all)."""
        return replica_figures(self.run)

    @property
    def template_overhead(self) -> tuple[int, int] | None:
        """(least, most) prompt tokens the server counted beyond the exact user text a dataset
        made (the chat template's fixed overhead); None when no prompt was made exact."""
        extra = [r.input_tokens - r.dataset_input_tokens for r in self.run.records
                 if r.ok and r.input_tokens is not None and r.dataset_input_tokens is not None]
        return (min(extra), max(extra)) if extra else None

    # --- JSON ----------------------------------------------------------------------------

    def to_json(self) -> JSONObject:
        """This window alone (each repeat is a window of its own).  ``distributions`` and
        ``scalars`` are written for readers of the document; reading it back recomputes them
        from ``records``."""
        summary = self.metrics.summary()
        return {
            "served": self.served.to_json(),
            "load": {**self.shape.to_json(), "label": self.shape.label,
                     "max_tokens": self.max_tokens},
            "window": run_to_json(self.run),
            "server_metrics": None if self.server_metrics is None else dict(self.server_metrics),
            "server_notes": list(self.server_notes),
            "server_families": [scraped.to_json() for scraped in self.server_families],
            "resources": None if self.resources is None else self.resources.to_json(),
            "prompts": None if self.prompts is None else self.prompts.to_json(),
            "health": None if self.health is None else self.health.to_json(),
            "sizing": None if self.sizing is None else {
                **self.sizing.to_json(), "description": self.sizing.describe(self.requests)},
            "distributions": {name: {stat: rounded(value) for stat, value in stats.items()}
                              for name, stats in summary.items()},
            "scalars": {name: rounded(value) for name, value in self.metrics.scalars.items()
                        if name in SCALARS},
        }

    @classmethod
    def from_json(cls, fields: Fields) -> WindowResult:
        load = fields.obj("load")
        prompts, health = fields.obj_or_none("prompts"), fields.obj_or_none("health")
        resources = fields.obj_or_none("resources")
        server = fields.obj_or_none("server_metrics")
        sizing = fields.obj_or_none("sizing")
        return cls(
            served=ServedInfo.from_json(fields.obj("served")),
            shape=LoadShape.from_json(load),
            max_tokens=load.integer("max_tokens"),
            run=run_from_json(fields.obj("window")),
            server_metrics=None if server is None else fields.number_map("server_metrics"),
            server_notes=fields.texts("server_notes"),
            server_families=fields.each("server_families", ScrapedFamilies.from_json),
            resources=None if resources is None else Resources.from_json(resources),
            prompts=None if prompts is None else PromptOrigin.from_json(prompts),
            health=None if health is None else Health.from_json(health),
            sizing=None if sizing is None else WindowSizing.from_json(sizing),
        )

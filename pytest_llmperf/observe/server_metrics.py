"""An engine's own figures over one measured window, from the families its endpoints exposed.

:class:`ServerMetricsProbe` is a window observer (see :mod:`pytest_llmperf.load.closed_loop`):
one :class:`~pytest_llmperf.observe.family_capture.FamilyCapture` per metrics URL (a launched
engine's ``/metrics``, each ``--llmperf-metrics-url``) captures every family over the window
(:mod:`pytest_llmperf.results.server_families`).  :meth:`ServerMetricsProbe.families` gives
them all; :meth:`ServerMetricsProbe.result` reads the engine's figures that the report sets
beside the client's, by the names of :class:`ServerMetricNames` (an attached server's names
are unknown: every engine's are tried, engines.openai).  Over several URLs counters and
histograms are summed (results.server_families.combine).

What :meth:`ServerMetricsProbe.result` returns (a field is absent, not zero, when the engine
does not offer the metric, a scrape failed, or the window gave it nothing to divide by):

- ``server_ttft_ms_mean``: Δ sum / Δ count of the engine's time-to-first-token histogram, ms.
- ``server_tpot_ms_mean``: the same for its time-per-output-token (inter-token latency)
  histogram, ms.
- ``server_e2e_ms_mean``: the same for its end-to-end request latency histogram, ms.
- ``server_queue_ms_mean``: the same for its time-in-queue (before scheduling) histogram, ms.
- ``prompt_tokens``: Δ of the engine's prompt-token counter (llama.cpp: excluding tokens
  reused from its prompt cache).
- ``generation_tokens``: Δ of the engine's generated-token counter.
- ``server_decode_ms_per_token``: Δ seconds spent generating / Δ ``generation_tokens``, ms
  (llama.cpp's ``tokens_predicted_seconds``; per request, summed over requests, so it is
  comparable to the client's per-user TPOT).
- ``server_prefill_ms_per_token``: Δ seconds spent on prompts / Δ ``prompt_tokens``, ms.
- ``preemptions``: Δ of the engine's preemption counter (requests evicted and recomputed).
- ``prefix_cache_hit_rate``: Δ prefix-cache hit tokens / Δ prefix-cache queried tokens.
- ``spec_acceptance_rate``: Δ accepted draft tokens / Δ draft tokens (speculative decoding).
- ``spec_acceptance_length``: 1 + Δ accepted draft tokens / Δ drafts (verification steps):
  the tokens each target-model step yields, its bonus token included, as vLLM's log and
  SGLang's gauge give it.  Where an engine has gauges instead of counters (SGLang's
  ``spec_accept_rate`` and ``spec_accept_length``), both figures are the gauges' means over
  the window.
- ``kv_cache_usage_peak`` / ``kv_cache_usage_mean``: largest and mean KV-cache usage (0..1)
  over the polls during the window.
- ``requests_running_peak`` / ``requests_waiting_peak``: largest number of requests being
  run / waiting in the engine's queue over the polls during the window.

A counter that went down (the engine restarted) gives no delta.  Failed scrapes and polls are
recorded in :attr:`ServerMetricsProbe.notes`, never raised.  The text (Prometheus 0.0.4 or
OpenMetrics) is parsed by :func:`pytest_llmperf.observe.exposition.parse_exposition`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_llmperf.observe.family_capture import FamilyCapture, Fetch, fetch_text
from pytest_llmperf.results.server_families import FamilyWindow, ScrapedFamilies, combine

__all__ = ["ServerMetricNames", "ServerMetricsProbe", "engine_figures", "fetch_text"]

# Each seconds-histogram field of ServerMetricNames -> the result key of its mean, in ms.
_HISTOGRAM_MEANS = (
    ("ttft_seconds", "server_ttft_ms_mean"),
    ("tpot_seconds", "server_tpot_ms_mean"),
    ("e2e_seconds", "server_e2e_ms_mean"),
    ("queue_seconds", "server_queue_ms_mean"),
)
_COUNTERS = ("prompt_tokens", "generation_tokens", "decode_seconds", "prompt_seconds",
             "preemptions", "prefix_cache_hits", "prefix_cache_queries",
             "spec_draft_tokens", "spec_accepted_tokens", "spec_drafts")
_GAUGES = ("kv_cache_usage", "requests_running", "requests_waiting")


@dataclass(frozen=True)
class ServerMetricNames:
    """An engine's Prometheus names for what the report shows.  Each field lists alternatives,
    first match wins: engines rename metrics between versions."""

    ttft_seconds: tuple[str, ...] = ()  # histogram: time to first token
    tpot_seconds: tuple[str, ...] = ()  # histogram: time per output token / inter-token latency
    e2e_seconds: tuple[str, ...] = ()  # histogram: whole request
    queue_seconds: tuple[str, ...] = ()  # histogram: time waiting before scheduling
    prompt_tokens: tuple[str, ...] = ()  # counter
    generation_tokens: tuple[str, ...] = ()  # counter
    decode_seconds: tuple[str, ...] = ()  # counter: seconds spent generating (llama.cpp)
    prompt_seconds: tuple[str, ...] = ()  # counter: seconds spent on prefill (llama.cpp)
    preemptions: tuple[str, ...] = ()  # counter
    prefix_cache_hits: tuple[str, ...] = ()  # counter (tokens)
    prefix_cache_queries: tuple[str, ...] = ()  # counter (tokens)
    spec_draft_tokens: tuple[str, ...] = ()  # counter: draft tokens proposed
    spec_accepted_tokens: tuple[str, ...] = ()  # counter: draft tokens accepted
    spec_drafts: tuple[str, ...] = ()  # counter: verification steps (drafts)
    spec_rate_gauge: tuple[str, ...] = ()  # gauge: acceptance rate (SGLang)
    spec_length_gauge: tuple[str, ...] = ()  # gauge: acceptance length, bonus included
    kv_cache_usage: tuple[str, ...] = ()  # gauge, 0..1
    requests_running: tuple[str, ...] = ()  # gauge
    requests_waiting: tuple[str, ...] = ()  # gauge

    @classmethod
    def union(cls, tables: Sequence[ServerMetricNames]) -> ServerMetricNames:
        """Every table's alternatives in turn (a server of unknown engine: engine names are
        prefixed, ``vllm:``, ``sglang:``, so they do not clash)."""
        return cls(**{f.name: tuple(dict.fromkeys(name for table in tables
                                                  for name in getattr(table, f.name)))
                      for f in dataclasses.fields(cls)})


# --- scraping ------------------------------------------------------------------------------

class ServerMetricsProbe:
    """Window observer: every family of each of ``urls`` over one measured window, and the
    engine's figures among them by ``names`` (see the module docstring).

    ``fetch`` (url, timeout_s) -> text is for tests; the default GETs over HTTP.
    """

    def __init__(
        self,
        urls: Sequence[str],
        names: ServerMetricNames | None,
        *,
        timeout_s: float = 3.0,
        poll_interval_s: float = 0.5,
        fetch: Fetch | None = None,
    ) -> None:
        self.names = names
        self.captures = [FamilyCapture(url, timeout_s=timeout_s,
                                       poll_interval_s=poll_interval_s,
                                       fetch=fetch or fetch_text)
                         for url in dict.fromkeys(urls)]
        self._families: tuple[ScrapedFamilies, ...] | None = None  # the last window's, once

    @property
    def notes(self) -> list[str]:
        """Why some figures are missing: failed scrapes, counters that went down."""
        return [note for scraped in self.families() for note in scraped.notes]

    # -- WindowObserver ---------------------------------------------------------------------

    def window_started(self) -> None:
        self._families = None
        for capture in self.captures:
            capture.window_started()

    def window_ended(self) -> None:
        self._families = None
        for capture in self.captures:
            capture.window_ended()

    # -- results ----------------------------------------------------------------------------

    def families(self) -> tuple[ScrapedFamilies, ...]:
        """Every family of each URL over the window (worked out once per window: the
        result, the notes and the store all read it)."""
        if self._families is None:
            self._families = tuple(capture.result() for capture in self.captures)
        return self._families

    def result(self) -> dict[str, float]:
        """What the engine said about the window, JSON-ready; see the module docstring."""
        together = combine(self.families())
        if together is None or self.names is None:
            return {}
        return engine_figures(self.names, together)


def engine_figures(names: ServerMetricNames, scraped: ScrapedFamilies) -> dict[str, float]:
    """The engine's figures (module docstring) among one window's families."""
    out: dict[str, float] = {}
    for field_name, key in _HISTOGRAM_MEANS:
        total, count = _sum_and_count(scraped, _names(names, field_name))
        if count and total is not None and total >= 0:
            out[key] = total / count * 1000.0
    delta: dict[str, float] = {}
    for field_name in _COUNTERS:
        found = _first(scraped, _names(names, field_name), ("counter", "untyped"))
        if found is not None and found.delta is not None:
            delta[field_name] = found.delta
    for key in ("prompt_tokens", "generation_tokens", "preemptions"):
        if key in delta:
            out[key] = delta[key]
    ratios = (
        ("server_decode_ms_per_token", "decode_seconds", "generation_tokens", 1000.0),
        ("server_prefill_ms_per_token", "prompt_seconds", "prompt_tokens", 1000.0),
        ("prefix_cache_hit_rate", "prefix_cache_hits", "prefix_cache_queries", 1.0),
        ("spec_acceptance_rate", "spec_accepted_tokens", "spec_draft_tokens", 1.0),
    )
    for key, numerator, denominator, scale in ratios:
        if numerator in delta and delta.get(denominator, 0) > 0:
            out[key] = delta[numerator] / delta[denominator] * scale
    if "spec_accepted_tokens" in delta and delta.get("spec_drafts", 0) > 0:
        out["spec_acceptance_length"] = 1.0 + delta["spec_accepted_tokens"] / delta["spec_drafts"]
    for key, field_name in (("spec_acceptance_rate", "spec_rate_gauge"),
                            ("spec_acceptance_length", "spec_length_gauge")):
        found = _first(scraped, _names(names, field_name), ("gauge", "untyped"))
        if key not in out and found is not None and found.mean is not None:
            out[key] = found.mean
    for field_name in _GAUGES:
        found = _first(scraped, _names(names, field_name), ("gauge", "untyped"))
        if found is None or found.peak is None:
            continue
        out[f"{field_name}_peak"] = found.peak
        if field_name == "kv_cache_usage" and found.mean is not None:
            out[f"{field_name}_mean"] = found.mean
    return {key: value for key, value in out.items() if math.isfinite(value)}


def _sum_and_count(scraped: ScrapedFamilies, names: tuple[str, ...]
                   ) -> tuple[float | None, float | None]:
    """Δ sum and Δ count of the first histogram (or summary) of ``names``; a page without
    ``# TYPE`` lines gives them as untyped ``NAME_sum`` and ``NAME_count``."""
    for name in names:
        found = scraped.find(name)
        if found is not None and found.kind in ("histogram", "summary"):
            return found.total, found.count
        total, count = scraped.find(name + "_sum"), scraped.find(name + "_count")
        if total is not None and count is not None:
            return total.delta, count.delta
    return None, None


def _first(scraped: ScrapedFamilies, names: tuple[str, ...],
           kinds: tuple[str, ...]) -> FamilyWindow | None:
    """The first of ``names`` that ``scraped`` has, as one of ``kinds``."""
    for name in names:
        found = scraped.find(name)
        if found is not None and found.kind in kinds:
            return found
    return None


def _names(names: ServerMetricNames, field_name: str) -> tuple[str, ...]:
    alternatives: tuple[str, ...] = getattr(names, field_name)
    return alternatives

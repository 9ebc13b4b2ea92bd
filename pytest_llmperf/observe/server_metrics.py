"""Prometheus scrapes of an engine's own metrics, as deltas over one measured window.

:class:`ServerMetricsProbe` is a window observer (see :mod:`pytest_llmperf.load.closed_loop`):
it scrapes the engine's ``/metrics`` just before the measured window and just after it, and polls
the engine's gauges every 0.5 s in between.  Warm-up requests end before the first scrape, so
they are not counted.  Every number is summed over label sets (several models, engines or
finish reasons), except the KV-cache usage ratio, which is averaged over them: two engines at
50 % are not "100 % full".

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
- ``kv_cache_usage_peak`` / ``kv_cache_usage_mean``: largest and mean KV-cache usage (0..1)
  over the polls during the window.
- ``requests_running_peak`` / ``requests_waiting_peak``: largest number of requests being
  run / waiting in the engine's queue over the polls during the window.

A counter that went down (the engine restarted) gives no delta.  Failed scrapes and polls are
recorded in :attr:`ServerMetricsProbe.notes`, never raised: the client-side measurement stands
on its own.  The text (Prometheus 0.0.4 or OpenMetrics) is parsed by
:func:`pytest_llmperf.observe.exposition.parse_exposition`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import requests

from pytest_llmperf.observe.exposition import Exposition, parse_exposition

__all__ = ["ServerMetricNames", "ServerMetricsProbe", "fetch_text"]

# Each seconds-histogram field of ServerMetricNames -> the result key of its mean, in ms.
_HISTOGRAM_MEANS = (
    ("ttft_seconds", "server_ttft_ms_mean"),
    ("tpot_seconds", "server_tpot_ms_mean"),
    ("e2e_seconds", "server_e2e_ms_mean"),
    ("queue_seconds", "server_queue_ms_mean"),
)
_COUNTERS = ("prompt_tokens", "generation_tokens", "decode_seconds", "prompt_seconds",
             "preemptions", "prefix_cache_hits", "prefix_cache_queries")
_GAUGES = ("kv_cache_usage", "requests_running", "requests_waiting")
# Gauges that are ratios: averaged over label sets, not summed.
_RATIO_GAUGES = frozenset({"kv_cache_usage"})


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
    kv_cache_usage: tuple[str, ...] = ()  # gauge, 0..1
    requests_running: tuple[str, ...] = ()  # gauge
    requests_waiting: tuple[str, ...] = ()  # gauge


# --- scraping ------------------------------------------------------------------------------

Fetch = Callable[[str, float], str]


def fetch_text(url: str, timeout_s: float) -> str:
    """GET ``url``'s text; raises for a non-2xx answer.  The exposition formats are UTF-8: a
    ``text/plain`` answer that names no charset is decoded as UTF-8, not ISO-8859-1."""
    response = requests.get(url, timeout=timeout_s, headers={"Accept": "text/plain"})
    response.raise_for_status()
    if "charset" not in response.headers.get("Content-Type", "").lower():
        response.encoding = "utf-8"
    return response.text


class ServerMetricsProbe:
    """Window observer: the engine's metrics over one measured window (see module docstring).

    ``fetch`` (url, timeout_s) -> text is for tests; the default GETs over HTTP.
    """

    def __init__(
        self,
        url: str,
        names: ServerMetricNames,
        *,
        timeout_s: float = 3.0,
        poll_interval_s: float = 0.5,
        fetch: Fetch = fetch_text,
    ) -> None:
        self.url = url
        self.names = names
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.notes: list[str] = []
        self._fetch = fetch
        self._before: Exposition | None = None
        self._after: Exposition | None = None
        self._polls: dict[str, list[float]] = {name: [] for name in _GAUGES}
        self._failed_polls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- WindowObserver ---------------------------------------------------------------------

    def window_started(self) -> None:
        # A probe may watch windows one after another (the stages of a staged load).
        self._stop.clear()
        with self._lock:
            self._polls = {name: [] for name in _GAUGES}
            self._failed_polls = 0
        self.notes = []
        self._before = self._scrape("before the window")
        gauges = [name for name in _GAUGES if _names(self.names, name)]
        # Poll only what the engine offers; if the first scrape failed, try anyway.
        if self._before is not None:
            gauges = [g for g in gauges if self._read_gauge(self._before, g) is not None]
        if gauges:
            self._thread = threading.Thread(target=self._poll, args=(gauges,),
                                            name="llmperf-metrics-poll", daemon=True)
            self._thread.start()

    def window_ended(self) -> None:
        self._stop.set()  # a poll still in flight after this is thrown away
        if self._thread is not None:
            self._thread.join(self.timeout_s)
            with self._lock:
                failed, taken = self._failed_polls, sum(map(len, self._polls.values()))
            if failed:
                self.notes.append(f"{failed} gauge poll(s) of {self.url} failed")
            elif not taken:
                self.notes.append(f"no gauge sample: the window was shorter than the "
                                  f"{self.poll_interval_s:g} s poll interval")
        self._after = self._scrape("after the window")

    # -- results ----------------------------------------------------------------------------

    def result(self) -> dict[str, float]:
        """What the engine said about the window, JSON-ready; see the module docstring."""
        out: dict[str, float] = {}
        before, after = self._before, self._after
        if before is not None and after is not None:
            out.update(self._deltas(before, after))
        with self._lock:
            polls = {name: list(values) for name, values in self._polls.items()}
        for name, values in polls.items():
            if not values:
                continue
            out[f"{name}_peak"] = max(values)
            if name == "kv_cache_usage":
                out[f"{name}_mean"] = math.fsum(values) / len(values)
        return {key: value for key, value in out.items() if math.isfinite(value)}

    def _deltas(self, before: Exposition, after: Exposition) -> dict[str, float]:
        out: dict[str, float] = {}
        for field_name, key in _HISTOGRAM_MEANS:
            names = _names(self.names, field_name)
            first, last = before.histogram(names), after.histogram(names)
            if first is None or last is None:
                continue
            total, count = last[0] - first[0], last[1] - first[1]
            if count > 0 and total >= 0:
                out[key] = total / count * 1000.0
        delta: dict[str, float] = {}
        for field_name in _COUNTERS:
            names = _names(self.names, field_name)
            first_value, last_value = before.counter(names), after.counter(names)
            if first_value is None or last_value is None:
                continue
            if last_value < first_value:
                self.notes.append(f"{field_name} counter went down ({first_value:g} -> "
                                  f"{last_value:g}): the engine restarted? no delta")
                continue
            delta[field_name] = last_value - first_value
        for key in ("prompt_tokens", "generation_tokens", "preemptions"):
            if key in delta:
                out[key] = delta[key]
        ratios = (
            ("server_decode_ms_per_token", "decode_seconds", "generation_tokens", 1000.0),
            ("server_prefill_ms_per_token", "prompt_seconds", "prompt_tokens", 1000.0),
            ("prefix_cache_hit_rate", "prefix_cache_hits", "prefix_cache_queries", 1.0),
        )
        for key, numerator, denominator, scale in ratios:
            if numerator in delta and delta.get(denominator, 0) > 0:
                out[key] = delta[numerator] / delta[denominator] * scale
        return out

    # -- internals --------------------------------------------------------------------------

    def _scrape(self, when: str) -> Exposition | None:
        try:
            text = self._fetch(self.url, self.timeout_s)
        except Exception as exc:  # any failure only costs the server-side numbers
            self.notes.append(f"scrape of {self.url} {when} failed: {type(exc).__name__}: {exc}")
            return None
        parsed = parse_exposition(text)
        if parsed.invalid_lines:
            self.notes.append(f"{parsed.invalid_lines} unreadable line(s) in the scrape {when}")
        return parsed

    def _read_gauge(self, scrape: Exposition, name: str) -> float | None:
        return scrape.gauge(_names(self.names, name), average=name in _RATIO_GAUGES)

    def _poll(self, gauges: list[str]) -> None:
        # Polls run during the window, in the client's process: parse only the gauges' lines
        # (a vLLM page is ~3000 lines, 66 ms of GIL-holding parse; its gauges are a handful).
        prefixes = tuple(name for gauge in gauges for name in _names(self.names, gauge))
        while not self._stop.wait(self.poll_interval_s):
            try:
                text = self._fetch(self.url, self.timeout_s)
                scrape = parse_exposition(_lines_of(text, prefixes))
            except Exception:  # counted; the next poll may work
                with self._lock:
                    self._failed_polls += 1
                continue
            values = {name: self._read_gauge(scrape, name) for name in gauges}
            with self._lock:
                if self._stop.is_set():
                    return  # the window ended while this poll was in flight
                for name, value in values.items():
                    if value is not None:
                        self._polls[name].append(value)


def _lines_of(text: str, prefixes: tuple[str, ...]) -> str:
    """The sample lines of ``text`` whose metric name starts with one of ``prefixes``; lines
    with a quoted (UTF-8) name are kept for the parser to read."""
    return "\n".join(line for line in text.splitlines()
                     if line.startswith(prefixes) or line.startswith('{"')) + "\n"


def _names(names: ServerMetricNames, field_name: str) -> tuple[str, ...]:
    alternatives: tuple[str, ...] = getattr(names, field_name)
    return alternatives

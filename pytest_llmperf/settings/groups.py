"""The settings by concern: each layer takes the group it reads.

Every field is an option of :data:`pytest_llmperf.settings.options.OPTIONS` (its ``groups``
name the group), resolved by :func:`pytest_llmperf.settings.resolve.resolve_settings`; the
defaults live in that option table alone (``resolve_settings({}, {}, {}, rootdir)`` gives
them all).  ``sources`` says where each value came from, for messages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_llmperf.results.load_shape import ARRIVALS, Arrivals, LoadShape
from pytest_llmperf.settings.ab_spec import ABSideSpec

if TYPE_CHECKING:
    from pytest_llmperf.results.rate_stages import RateStage
    from pytest_llmperf.results.thresholds import Gate

__all__ = ["DEFAULT_LIMITS", "CheckSettings", "LoadSettings", "ReportSettings", "SearchSettings",
           "ServerSettings", "SettingError", "Settings", "StoreSettings", "TimeLimits"]


class SettingError(ValueError):
    """A setting with a bad value; the message names the value and its source."""


@dataclass(frozen=True)
class TimeLimits:
    """How long a request may take to its last token (``request_s``) and to its first
    (``first_token_s``; None: no limit of its own), and a whole run, warm-up included
    (``window_s``; None: none).  A request over a limit is a failed ``timeout`` request."""

    request_s: float = 600.0
    first_token_s: float | None = None
    window_s: float | None = None


DEFAULT_LIMITS = TimeLimits()  # the options' defaults: 600 s a request, no other limit


@dataclass(frozen=True)
class ServerSettings:
    """What launches (or attaches to) an engine and what its client sends."""

    base_url: str | None  # one URL, or several comma-separated: replicas (settings.parsers.urls)
    api_key_env: str | None
    gpus: tuple[tuple[int, ...], ...] | None
    tp: int | None
    max_model_len: int
    max_num_seqs: int
    gpu_memory_utilization: float
    prefix_caching: bool
    chunked_prefill: bool | None
    engine_args: Mapping[str, tuple[str, ...]]
    llamacpp_bin: Path | None
    engine_python: Mapping[str, Path]
    ngl: int | None
    ready_timeout: int
    ignore_eos: bool
    max_tokens: int  # the longest answer asked for: llama.cpp sizes its slots for it
    output_dir: Path  # the servers' logs
    replica_policy: str = "round-robin"  # --llmperf-replica-policy
    metrics_url: str | None = None  # --llmperf-metrics-url, comma-separated when several
    dcgm_url: str | None = None  # --llmperf-dcgm-url, comma-separated when several
    endpoint: str = "chat"  # --llmperf-endpoint: embeddings makes llama.cpp serve them
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Each replica's URL (one for a single server; none when launching)."""
        return tuple(self.base_url.split(",")) if self.base_url else ()

    @property
    def metrics_urls(self) -> tuple[str, ...]:
        """Each --llmperf-metrics-url, in the order given."""
        return tuple(self.metrics_url.split(",")) if self.metrics_url else ()

    @property
    def dcgm_urls(self) -> tuple[str, ...]:
        """Each --llmperf-dcgm-url, in the order given."""
        return tuple(self.dcgm_url.split(",")) if self.dcgm_url else ()

    def api_key(self) -> str | None:
        """The key itself, read when needed so that it lives in no record or report."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def python_for(self, backend: str) -> str:
        """The interpreter that runs a Python engine (its own virtualenv, often)."""
        chosen = self.engine_python.get(backend) or self.engine_python.get("*")
        return str(chosen) if chosen else sys.executable

    def gpu_ids(self, env: Mapping[str, str] = os.environ) -> tuple[int, ...] | None:
        """This process's GPUs: the set for this pytest-xdist worker among its host's workers
        (the first takes the first; plugin.hosts says which worker a host's n-th is).  One
        set for several workers of one host is refused: their engines would share the GPUs."""
        if self.gpus is None:
            return None
        worker = env.get("PYTEST_XDIST_WORKER", "gw0")
        index = int(worker[2:]) if worker[2:].isdigit() else 0
        count = env.get("PYTEST_XDIST_WORKER_COUNT", "1")
        workers = int(count) if count.isdigit() else 1
        slot, _, of = env.get("LLMPERF_HOST_SLOT", "").partition("/")
        if slot.isdigit() and of.isdigit():  # set on a worker by plugin.hosts
            index, workers = int(slot), int(of)
        if len(self.gpus) == 1 and workers > 1:
            ids = ",".join(map(str, self.gpus[0]))
            raise SettingError(
                f"{self.sources.get('gpus', '--gpus')}: one GPU set ({ids}) for {workers} "
                f"pytest-xdist workers would put their engines on the same GPUs at once; give "
                f"one set per worker ({'|'.join(['...'] * workers)}, e.g. --gpus '0,1|2,3' "
                f"with -n 2) or run without -n")
        if len(self.gpus) > 1 and index >= len(self.gpus):
            raise SettingError(
                f"{self.sources.get('gpus', '--gpus')}: {len(self.gpus)} GPU sets for "
                f"pytest-xdist worker {worker}: give one set per worker (-n {len(self.gpus)})"
            )
        return self.gpus[min(index, len(self.gpus) - 1)]


@dataclass(frozen=True)
class LoadSettings:
    """What each measured window sends, and how it is shaped and bounded."""

    requests: int
    duration: float | None  # seconds per window instead of a request count
    warmup: int
    max_tokens: int
    repeats: int
    request_timeout: float
    ttft_timeout: float | None
    window_timeout: float
    client_processes: int
    event_loop: str
    users: tuple[int, ...]
    rate: tuple[float, ...]
    arrivals: str | None
    burstiness: float
    max_concurrency: int | None
    ramp: float
    seed: int
    # --llmperf-dataset as given; parsed, and its file checked, when a session activates.
    # None: the built-in prompts.
    dataset: str | None
    trace_speed: float  # --llmperf-trace-speed
    trace_window: tuple[float, float | None] | None  # --llmperf-trace-window START:END
    rate_stages: tuple[RateStage, ...] | None  # --llmperf-rate-stages
    endpoint: str  # --llmperf-endpoint: chat, completions or embeddings
    embedding_batch: int  # --llmperf-embedding-batch
    rerank_documents: int  # --llmperf-rerank-documents
    images: tuple[tuple[int, int], ...] | None  # --llmperf-images: (width, height) in turn
    telemetry_interval: float
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def sized_by_slo(self) -> bool:
        """Neither --llmperf-requests nor --llmperf-duration was given (their ``sources`` say
        "default"): a window its caller does not size either takes as many requests as its
        SLOs need (results.sequential), from ``requests`` up to results.sequential.CAP."""
        return all(self.sources.get(name) == "default" for name in ("requests", "duration"))

    @property
    def limits(self) -> TimeLimits:
        return TimeLimits(self.request_timeout, self.ttft_timeout, self.window_timeout)

    def closed_shape(self, users: int) -> LoadShape:
        """A closed loop of ``users`` with the run's --llmperf-ramp."""
        return LoadShape.closed(users, ramp_s=self.ramp)

    def open_shape(self, rate: float) -> LoadShape:
        """An open loop at ``rate`` with the run's arrivals, burstiness, cap and seed."""
        arrivals: Arrivals | None = None
        if self.arrivals in ARRIVALS:
            arrivals = self.arrivals  # type: ignore[assignment]
        return LoadShape.open(rate, arrivals=arrivals, burstiness=self.burstiness,
                              max_concurrency=self.max_concurrency, seed=self.seed)

    def staged_shape(self, stages: Sequence[RateStage]) -> LoadShape:
        """Staged rates with the run's arrivals, burstiness, cap and seed."""
        open_shape = self.open_shape(1.0)
        return LoadShape.staged(tuple(stages), arrivals=open_shape.arrivals,
                                burstiness=self.burstiness,
                                max_concurrency=self.max_concurrency, seed=self.seed)

    def shape(self, *, users: int | None = None, rate: float | None = None,
              shape: LoadShape | None = None) -> LoadShape:
        """The one load asked for: ``users`` (with --llmperf-ramp), ``rate`` (with the run's
        arrivals, burstiness and cap) or a whole ``shape``; one user when none is given."""
        if sum(x is not None for x in (users, rate, shape)) > 1:
            raise TypeError("give one of users=, rate= or shape=")
        if shape is not None:
            return shape
        if rate is not None:
            return self.open_shape(rate)
        return self.closed_shape(users or 1)

    def window_size(self, requests: int | None, duration_s: float | None
                    ) -> tuple[int | None, float | None]:
        """(requests, seconds) of a window: what the call gave, else the run's."""
        if requests is None and duration_s is None:
            return (None if self.duration else self.requests), self.duration
        return requests, duration_s


@dataclass(frozen=True)
class SearchSettings:
    """Bounds of the capacity searches."""

    capacity_budget: float
    probe_requests: int
    capacity_max_users: int
    capacity_max_rate: float

    def maximum(self, dimension: str) -> float:
        return float(self.capacity_max_users if dimension == "users"
                     else self.capacity_max_rate)


@dataclass(frozen=True)
class CheckSettings:
    """What results are held to, and what counts as a failure."""

    thresholds: Path
    inconclusive: str  # fail, warn or pass
    require_gpu: bool
    strict_validity: bool


@dataclass(frozen=True)
class StoreSettings:
    """Where runs are kept and what a run is compared with."""

    storage: Path
    json: Path | None
    save: str | None
    autosave: bool
    compare: str | None
    compare_runs: int
    compare_fail: tuple[Gate, ...]
    compare_any_hardware: bool
    ab: tuple[ABSideSpec, ABSideSpec] | None  # --llmperf-ab: the two builds (settings.ab_spec)
    ab_mode: str  # interleave or bracket
    ab_rounds: int


@dataclass(frozen=True)
class ReportSettings:
    report: Path | None  # the markdown report
    html: Path | None  # the same report as one self-contained HTML file
    output_dir: Path  # logs, charts and results.json


@dataclass(frozen=True)
class Settings:
    """Every setting of a session: the backend x model matrix and one group per concern."""

    backends: tuple[str, ...]
    models: tuple[str, ...]
    server: ServerSettings
    load: LoadSettings
    search: SearchSettings
    checks: CheckSettings
    store: StoreSettings
    report: ReportSettings
    # setting name -> where its value came from, e.g. "--backend (command line)"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

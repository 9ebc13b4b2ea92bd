"""Staged rates as windows: one schedule, observed and measured stage by stage.

A staged load (``LoadShape.staged``, results.rate_stages) is offered as one open loop, so the
stages follow one another with no gap and no drain.  :class:`PhasedObservers` ends the
window's observers (telemetry, the engine's metrics, the machine's health) at each stage's
scheduled start and starts them again, from a thread of its own, so the event loop keeps its
pace; :func:`stage_windows` then cuts the run into one window per stage: the requests scheduled
in it, over the stage's time (or to its last answer, if later), with what the observers saw.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pytest_llmperf.load.closed_loop import WindowObserver
from pytest_llmperf.load.open_loop import peak_in_flight
from pytest_llmperf.load.shapes import staged_arrivals
from pytest_llmperf.observe.health import judge_health, send_lateness
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.rate_stages import stage_starts
from pytest_llmperf.results.records import LoadRun
from pytest_llmperf.results.resources import Resources
from pytest_llmperf.results.server_families import ScrapedFamilies
from pytest_llmperf.results.window import WindowResult

__all__ = ["PhasedObservers", "StageObservations", "stage_shape", "stage_windows"]

_NS = 1_000_000_000


@dataclass(frozen=True)
class StageObservations:
    """What the observers saw over one stage (None: not observed)."""

    resources: Resources | None = None
    server_metrics: Mapping[str, float] | None = None
    server_notes: tuple[str, ...] = ()
    server_families: tuple[ScrapedFamilies, ...] = ()
    health_figures: Mapping[str, float] | None = None


class PhasedObservers:
    """A window observer that tells ``observers`` a window ended and a new one started at each
    of ``boundaries_s`` (seconds after the window's start), keeping ``capture()`` of each
    phase in :attr:`phases`."""

    def __init__(self, observers: Sequence[WindowObserver], boundaries_s: Sequence[float],
                 capture: Callable[[], StageObservations]) -> None:
        self.observers = list(observers)
        self.boundaries_s = list(boundaries_s)
        self.capture = capture
        self.phases: list[StageObservations] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def window_started(self) -> None:
        for observer in self.observers:
            observer.window_started()
        self._thread = threading.Thread(target=self._switch, args=(time.monotonic(),),
                                        name="llmperf-stages", daemon=True)
        self._thread.start()

    def window_ended(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._end_phase()

    def _switch(self, started: float) -> None:
        for boundary in self.boundaries_s:
            if self._stop.wait(max(0.0, started + boundary - time.monotonic())):
                return
            with self._lock:
                self._end_phase()
                for observer in self.observers:
                    observer.window_started()

    def _end_phase(self) -> None:
        for observer in reversed(self.observers):
            observer.window_ended()
        self.phases.append(self.capture())


def stage_shape(shape: LoadShape, index: int) -> LoadShape:
    """The load of one stage of ``shape``: a steady stage is the open loop of its rate, a ramp
    a one-stage staged shape."""
    stage = shape.stages[index]
    if stage.is_ramp:
        return dataclasses.replace(shape, rate=stage.mean_rate, stages=(stage,))
    return dataclasses.replace(shape, rate=stage.start_rate, stages=())


def stage_windows(whole: WindowResult, phases: Sequence[StageObservations]
                  ) -> tuple[WindowResult, ...]:
    """``whole`` (a staged load's one window) cut into a window per stage.  A stage's requests
    are those scheduled in it (by the schedule, not by clock readings); it spans the stage's
    scheduled time, and longer where its last answer ends later.  ``phases`` are what was observed
    over each stage, in order (fewer where the run ended early)."""
    shape = whole.shape
    _, stage_of = staged_arrivals(shape)
    starts = stage_starts(shape.stages)
    windows = []
    last_sent = max((stage_of[r.request_id] for r in whole.run.records), default=0)
    for index in range(len(shape.stages)):
        records = tuple(r for r in whole.run.records if stage_of[r.request_id] == index)
        start_ns = whole.run.window_start_ns + round(starts[index] * _NS)
        stage_end_ns = start_ns + round(shape.stages[index].seconds * _NS)
        run = LoadRun(records=records, window_start_ns=start_ns,
                      window_end_ns=max([stage_end_ns, *(r.end_ns for r in records)]),
                      concurrency=peak_in_flight(records),
                      warmup_requests=whole.run.warmup_requests if index == 0 else 0,
                      stopped_early=whole.run.stopped_early if index == last_sent else None)
        seen = phases[index] if index < len(phases) else StageObservations()
        figures = seen.health_figures
        if figures is None and whole.health is not None:  # the run's, where not per stage
            figures = whole.health.figures
        ok_tokens = sum(r.output_tokens for r in records if r.ok)
        windows.append(dataclasses.replace(
            whole, shape=stage_shape(shape, index), run=run,
            server_metrics=seen.server_metrics, server_notes=seen.server_notes,
            server_families=seen.server_families,
            resources=(seen.resources.with_output_tokens(ok_tokens)
                       if seen.resources is not None else None),
            health=None if figures is None else judge_health(
                {k: v for k, v in figures.items() if k != "send_late_ms_p99"},
                *send_lateness(records), records=records),
            stages=(), repeats=(), sizing=None))
    return tuple(windows)

"""Every metric family of one Prometheus endpoint over one measured window.

:class:`FamilyCapture` is a window observer (see :mod:`pytest_llmperf.load.closed_loop`): it
scrapes the whole page just before the measured window and just after it, and polls the
page's gauges every 0.5 s in between.  :meth:`FamilyCapture.result` gives each family's
window figures (:mod:`pytest_llmperf.results.server_families` says what they are).  Warm-up
requests end before the first scrape, so they are not counted.

A failed scrape or poll is a note, never an exception: the client-side measurement stands on
its own.  A family that appears during the window (vLLM creates a label set at its first
request) counts from zero; a counter or histogram that went down (the server restarted) gives
no delta and a note.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from pytest_llmperf.observe.exposition import Exposition, Sample, parse_exposition
from pytest_llmperf.results.server_families import FamilyWindow, ScrapedFamilies, is_ratio

__all__ = ["FamilyCapture", "Fetch", "fetch_text", "lines_of"]

Fetch = Callable[[str, float], str]


def fetch_text(url: str, timeout_s: float) -> str:
    """GET ``url``'s text; raises for a non-2xx answer.  The exposition formats are UTF-8: a
    ``text/plain`` answer that names no charset is decoded as UTF-8, not ISO-8859-1."""
    import requests  # not at import: the plugin's entry imports nothing heavy

    response = requests.get(url, timeout=timeout_s, headers={"Accept": "text/plain"})
    response.raise_for_status()
    if "charset" not in response.headers.get("Content-Type", "").lower():
        response.encoding = "utf-8"
    return response.text


_KINDS = {"counter": "counter", "histogram": "histogram", "summary": "summary",
          "gauge": "gauge", "unknown": "untyped"}


class FamilyCapture:
    """Window observer: every family of ``url`` over one window (see the module docstring).

    ``fetch`` (url, timeout_s) -> text is for tests; the default GETs over HTTP.
    """

    def __init__(self, url: str, *, timeout_s: float = 3.0, poll_interval_s: float = 0.5,
                 fetch: Fetch | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.notes: list[str] = []
        self._fetch = fetch or fetch_text
        self._clock = clock
        self._before: Exposition | None = None
        self._after: Exposition | None = None
        self._seconds = 0.0
        self._started = 0.0
        self._polls: dict[str, list[float]] = {}
        self._failed_polls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- WindowObserver ---------------------------------------------------------------------

    def window_started(self) -> None:
        # One capture may watch windows one after another (the stages of a staged load).
        self._stop.clear()
        with self._lock:
            self._polls, self._failed_polls = {}, 0
        self.notes = []
        self._after = None
        self._before = self._scrape("before the window")
        self._started = self._clock()
        gauges = _gauges(self._before) if self._before is not None else []
        if gauges:
            self._thread = threading.Thread(target=self._poll, args=(gauges,),
                                            name="llmperf-metrics-poll", daemon=True)
            self._thread.start()

    def window_ended(self) -> None:
        self._stop.set()  # a poll still in flight after this is thrown away
        if self._thread is not None:
            self._thread.join(self.timeout_s)
            self._thread = None
            if self._failed_polls:
                self.notes.append(f"{self._failed_polls} gauge poll(s) of {self.url} failed")
        self._after = self._scrape("after the window")
        self._seconds = self._clock() - self._started if self._before is not None else 0.0

    # -- results ----------------------------------------------------------------------------

    def result(self) -> ScrapedFamilies:
        """Each family's figures over the window (none when a scrape failed: see notes)."""
        before, after = self._before, self._after
        if before is None or after is None:
            return ScrapedFamilies(self.url, {}, 0.0, tuple(self.notes))
        with self._lock:
            polls = {name: list(values) for name, values in self._polls.items()}
        families, went_down = _windows(before, after, polls)
        notes = list(self.notes)
        if went_down:
            notes.append(f"{len(went_down)} counter(s) of {self.url} went down, the server "
                         f"restarted?, no delta: {', '.join(sorted(went_down)[:5])}")
        return ScrapedFamilies(self.url, families, self._seconds, tuple(notes))

    # -- internals --------------------------------------------------------------------------

    def _scrape(self, when: str) -> Exposition | None:
        try:
            text = self._fetch(self.url, self.timeout_s)
        except Exception as exc:  # any failure only costs the server-side numbers
            self.notes.append(f"scrape of {self.url} {when} failed: {type(exc).__name__}: {exc}")
            return None
        parsed = parse_exposition(text)
        if parsed.invalid_lines:
            self.notes.append(f"{parsed.invalid_lines} unreadable line(s) in the scrape of "
                              f"{self.url} {when}")
        return parsed

    def _poll(self, gauges: list[str]) -> None:
        # Polls run during the window, in the client's process: parse only the gauges' lines
        # (a vLLM page is ~3000 lines, 66 ms of GIL-holding parse; its gauges are a handful).
        prefixes = tuple(gauges)
        while not self._stop.wait(self.poll_interval_s):
            try:
                text = self._fetch(self.url, self.timeout_s)
                scrape = parse_exposition(lines_of(text, prefixes))
            except Exception:  # counted; the next poll may work
                with self._lock:
                    self._failed_polls += 1
                continue
            values = {name: _gauge_value(scrape.samples, name) for name in gauges}
            with self._lock:
                if self._stop.is_set():
                    return  # the window ended while this poll was in flight
                for name, value in values.items():
                    if value is not None:
                        self._polls.setdefault(name, []).append(value)


def lines_of(text: str, prefixes: tuple[str, ...]) -> str:
    """The sample lines of ``text`` whose metric name starts with one of ``prefixes``; lines
    with a quoted (UTF-8) name are kept for the parser to read."""
    return "\n".join(line for line in text.splitlines()
                     if line.startswith(prefixes) or line.startswith('{"')) + "\n"


def _gauges(scrape: Exposition) -> list[str]:
    """The families read as gauges: typed gauge, or untyped."""
    kinds = _kinds(scrape)
    return [name for name, kind in kinds.items() if kind in ("gauge", "untyped")]


def _kinds(scrape: Exposition) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for sample in scrape.samples:
        kind = _KINDS.get(scrape.types.get(sample.family, "unknown"))
        if kind is not None:
            kinds.setdefault(sample.family, kind)
    return kinds


def _by_family(scrape: Exposition) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in scrape.samples:
        if not math.isnan(sample.value):
            grouped[sample.family].append(sample)
    return grouped


def _gauge_value(samples: Iterable[Sample], family: str) -> float | None:
    """A gauge's reading: its label sets summed (a ratio's averaged)."""
    values = [s.value for s in samples if s.family == family and not math.isnan(s.value)]
    if not values:
        return None
    total = math.fsum(values)
    return total / len(values) if is_ratio(family) else total


def _counter_value(samples: Iterable[Sample]) -> float:
    return math.fsum(s.value for s in samples if not s.name.endswith("_created"))


def _histogram(samples: Iterable[Sample], family: str) -> tuple[dict[float, float], float, float]:
    """(cumulative count by upper bound, sum, count), label sets added up."""
    buckets: dict[float, float] = defaultdict(float)
    total = count = 0.0
    for sample in samples:
        if sample.name == family + "_bucket" and "le" in sample.labels:
            try:
                buckets[float(sample.labels["le"])] += sample.value
            except ValueError:
                continue
        elif sample.name == family + "_sum":
            total += sample.value
        elif sample.name == family + "_count":
            count += sample.value
    return dict(buckets), total, count


def _windows(before: Exposition, after: Exposition, polls: dict[str, list[float]]
             ) -> tuple[dict[str, FamilyWindow], list[str]]:
    """Each family of ``after`` over the window, and the counters that went down."""
    first, last = _by_family(before), _by_family(after)
    families: dict[str, FamilyWindow] = {}
    went_down: list[str] = []
    for name, kind in _kinds(after).items():
        now, then = last.get(name, []), first.get(name, [])
        delta: float | None = None
        if kind in ("counter", "untyped"):
            delta = _counter_value(now) - _counter_value(then)
            # An untyped NAME_total is a counter by Prometheus' naming convention.
            if delta < 0 and (kind == "counter" or name.endswith("_total")):
                went_down.append(name)
                delta = None
            if kind == "counter":
                families[name] = FamilyWindow(kind, delta=delta)
                continue
        if kind in ("histogram", "summary"):
            buckets, total, count = _histogram(now, name)
            buckets_before, total_before, count_before = _histogram(then, name)
            deltas = tuple((bound, buckets[bound] - buckets_before.get(bound, 0.0))
                           for bound in sorted(buckets))
            if count < count_before or any(d < 0 for _, d in deltas):
                went_down.append(name)
                families[name] = FamilyWindow(kind)
                continue
            families[name] = FamilyWindow(kind, count=count - count_before,
                                          total=total - total_before,
                                          buckets=deltas if kind == "histogram" else ())
            continue
        # gauge, untyped: the polls and the two scrapes
        readings = [value for value in (_gauge_value(then, name), *polls.get(name, ()),
                                        _gauge_value(now, name)) if value is not None]
        families[name] = FamilyWindow(
            kind, delta=delta, peak=max(readings, default=None), low=min(readings, default=None),
            mean=math.fsum(readings) / len(readings) if readings else None,
            samples=len(readings))
    return families, went_down

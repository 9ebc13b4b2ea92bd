"""The saved run(s) a run is compared with (``--llmperf-compare``), read and checked before any
server starts, and the comparison of a test's results with them."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.results.capacity import CapacityResult
from pytest_llmperf.results.comparison import CapacityChange, Comparison
from pytest_llmperf.results.recorded import RecordedCapacity
from pytest_llmperf.results.thresholds import Gate
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.settings.groups import StoreSettings
from pytest_llmperf.store.capacity_compare import compare_capacity
from pytest_llmperf.store.compare import compare_windows, group_windows, hardware_differences
from pytest_llmperf.store.documents import RunDocument, StoreError, find_saved, load_run

__all__ = ["Baseline", "BaselineError", "load_baseline"]


class BaselineError(ValueError):
    """A baseline that cannot be used; the message names the setting and the file."""


@dataclass(frozen=True)
class Baseline:
    """Several runs (``--llmperf-compare-runs``) are pooled: their spread is the run-to-run
    variation.  Only the windows of this process's host (``host``, the label of a session over
    several hosts; None: the session's own) are compared with: never another host's."""

    paths: tuple[Path, ...]
    documents: tuple[RunDocument, ...]
    hardware_note: str | None  # set when its hardware differs (--llmperf-compare-any-hardware)
    host: str | None = None

    @property
    def label(self) -> str:
        """``0003_before.json`` or ``0001_before.json .. 0003_before.json (3 runs)``."""
        if len(self.paths) == 1:
            return self.paths[0].name
        return f"{self.paths[0].name} .. {self.paths[-1].name} ({len(self.paths)} runs)"

    @functools.cached_property
    def windows(self) -> dict[tuple[str, int], list[WindowResult]]:
        """Their windows by (node id, call), the runs' windows one after another."""
        pooled: dict[tuple[str, int], list[WindowResult]] = {}
        for document in self.documents:
            for key, windows in group_windows(document.windows, self.host).items():
                pooled.setdefault(key, []).extend(windows)
        return pooled

    @functools.cached_property
    def capacities(self) -> dict[tuple[str, str], list[CapacityResult]]:
        """Their capacity searches by (node id, dimension), one per run that has it."""
        found: dict[tuple[str, str], list[CapacityResult]] = {}
        for document in self.documents:
            for search in document.searches:
                if isinstance(search, RecordedCapacity) and search.provenance.host == self.host:
                    key = (search.provenance.nodeid, search.search.dimension)
                    found.setdefault(key, []).append(search.search)
        return found

    def compare(self, nodeid: str, call: int, windows: Sequence[WindowResult],
                gates: Sequence[Gate], seed: int = 0) -> Comparison:
        """This load's windows against the baseline's of the same test and call."""
        before = self.windows.get((nodeid, call))
        if not before:
            where = f" for host {self.host}" if self.host else ""
            return Comparison(self.label,
                              missing=f"this test and call are not in the baseline{where}")
        return compare_windows(before, windows, gates, label=self.label, seed=seed,
                               hardware_note=self.hardware_note)

    def compare_capacity(self, nodeid: str, search: CapacityResult,
                         gates: Sequence[Gate]) -> CapacityChange | None:
        """The search against the baseline's of the same test and dimension; None when the
        baseline has none."""
        before = self.capacities.get((nodeid, search.dimension))
        if not before:
            return None
        return compare_capacity(before, search,
                                next((g for g in gates if g.metric == search.metric), None))


def load_baseline(settings: StoreSettings, rootdir: Path, here: Mapping[str, object],
                  source: str = "--llmperf-compare", host: str | None = None) -> Baseline | None:
    """The baseline ``settings`` name, checked against this machine's fingerprint ``here``
    (the host labelled ``host`` in a session over several hosts); a missing or unreadable one,
    or one from other hardware (unless allowed), raises :class:`BaselineError` now rather than
    after an hour of load.  A baseline without this host's windows compares nothing here."""
    if settings.compare is None:
        return None
    try:
        if settings.compare.endswith(".json"):
            path = Path(settings.compare)
            paths = [path if path.is_absolute() else rootdir / path]
        else:
            paths = [run.path for run in find_saved(settings.storage, settings.compare,
                                                     settings.compare_runs)]
        documents = [load_run(path) for path in paths]
    except StoreError as exc:
        raise BaselineError(f"{source}: {exc}") from None
    notes = []
    for path, document in zip(paths, documents, strict=True):
        theirs = document.fingerprint_of(host)
        differences = [] if theirs is None else hardware_differences(theirs, here)
        if not differences:
            continue
        machine = f"host {host}" if host else "this machine"
        shown = "; ".join(f"{key}: baseline {before!r}, {machine} {now!r}"
                          for key, before, now in differences)
        if not settings.compare_any_hardware:
            raise BaselineError(
                f"{source}: baseline {path} was measured on other hardware ({shown}); its "
                f"numbers say nothing about {machine}. Compare on the same hardware, or pass "
                "--llmperf-compare-any-hardware to compare anyway (every row is then labelled)"
            )
        notes.append(f"other hardware ({shown})")
    return Baseline(tuple(paths), tuple(documents), "; ".join(dict.fromkeys(notes)) or None,
                    host)

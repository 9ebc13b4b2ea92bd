"""Reading a schema 1 result document (written before the result records were typed) as a
:class:`~pytest_llmperf.store.documents.RunDocument`, so that saved baselines keep comparing.

Schema 1 kept each window as a flat entry: the served model's fields at the top, the load and
its concurrency under ``load``, the window's length only as ``scalars.duration_s`` (rounded to
0.1 ms), verdicts as their rendered text, and a comparison's rows without their direction.
What a schema 2 record holds that schema 1 did not is derived (a row's direction from its
metric) or left empty (a window's telemetry timeline; a capacity search's own comparison with
the baseline of its day, whose figures schema 1 did not keep).
"""

from __future__ import annotations

from pytest_llmperf.results.capacity import CapacityResult, ProbeOutcome
from pytest_llmperf.results.comparison import Comparison, Row
from pytest_llmperf.results.health import Health
from pytest_llmperf.results.jsonfields import LARGEST_INTEGER, Fields, JSONDecodeError, JSONObject
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.metrics import metric_info
from pytest_llmperf.results.prefix_cache import CacheGain
from pytest_llmperf.results.prompt_origin import PromptOrigin
from pytest_llmperf.results.record_codec import decode_records
from pytest_llmperf.results.recorded import (
    Provenance,
    RecordedCapacity,
    RecordedPrefixCache,
    RecordedSearch,
    RecordedSweep,
    RecordedWindow,
)
from pytest_llmperf.results.records import LoadRun
from pytest_llmperf.results.resources import Resources
from pytest_llmperf.results.served import ServedInfo
from pytest_llmperf.results.slo import Verdict, read_check
from pytest_llmperf.results.window import WindowResult
from pytest_llmperf.store.run_document import RunDocument

__all__ = ["read_schema1"]


def read_schema1(fields: Fields) -> RunDocument:
    """The document in ``fields`` (its ``schema`` is 1)."""
    seen: dict[str, int] = {}
    windows = []
    for entry in fields.objects("windows"):
        nodeid = entry.text("nodeid")
        seen[nodeid] = seen.get(nodeid, 0) + 1  # before calls were numbered: the position
        windows.append(_window(entry, seen[nodeid]))
    searches = tuple(_search(entry) for entry in fields.objects("searches"))
    return RunDocument(fields.text("created"), fields.obj("fingerprint").as_dict(),
                       tuple(windows), searches, schema=1)


def _served(entry: Fields) -> ServedInfo:
    return ServedInfo(entry.text("backend"), entry.text("model"),
                      entry.text_or_none("engine") or "?", entry.text_or_none("model_file"),
                      entry.text_or_none("model_sha256"))


def _window(entry: Fields, position: int) -> RecordedWindow:
    load = entry.obj("load")
    duration_s = entry.obj("scalars").number("duration_s")
    if not 0 <= duration_s < LARGEST_INTEGER / 1e9:  # NaN too: schema 1 kept only this figure
        raise JSONDecodeError(f"{entry.path}.scalars.duration_s: expected the window's length "
                              f"in seconds, got {duration_s!r}")
    duration_ns = round(duration_s * 1e9)
    run = LoadRun(decode_records(entry), 0, duration_ns, load.integer("concurrency"),
                  load.integer("warmup"))
    resources = entry.obj_or_none("resources")
    prompts, health = entry.obj_or_none("prompts"), entry.obj_or_none("health")
    window = WindowResult(
        served=_served(entry), shape=LoadShape.from_json(load),
        max_tokens=entry.integer("max_tokens"), run=run,
        server_metrics=None if entry.raw("server_metrics") is None
        else entry.number_map("server_metrics"),
        server_notes=entry.texts("server_notes"),
        resources=None if resources is None else Resources.from_json(resources),
        prompts=None if not prompts or "source" not in prompts
        else PromptOrigin.from_json(prompts),
        health=None if health is None else Health.from_json(health))
    comparison = entry.obj_or_none("comparison")
    timeline = None if resources is None else resources.text_or_none("timeline_png")
    return RecordedWindow(Provenance.from_json(entry, position), window,
                          entry.each("verdicts", _verdict),
                          None if comparison is None else _comparison(comparison), timeline)


def _verdict(entry: Fields) -> Verdict:
    """Schema 1 kept the verdict's state and its rendered note; the reasons are in the note."""
    state = entry.text_or_none("state") or ("pass" if entry.flag("passed") else "fail")
    note = entry.text_or_none("note") or ""
    measured = entry.number_or_none("measured")
    reason = note.split(" skipped: ", 1)[-1].split("; required", 1)[0] if state == "skip" \
        else (note.split(" not measured: ", 1)[-1].rsplit(", required", 1)[0]
              if measured is None and note else None)
    unsupported = note.split(": inconclusive, ", 1)[-1] if state == "inconclusive" else None
    return Verdict(read_check(entry), measured, reason, state == "skip", unsupported,
                   entry.text_or_none("inconclusive_policy") or "warn")


def _comparison(entry: Fields) -> Comparison:
    rows = []
    for row in entry.objects("rows"):
        metric = row.text("metric").split(".")[0]
        raw: JSONObject = {**row.as_dict(), "higher_is_better": _higher_is_better(metric)}
        rows.append(Row.from_json(Fields(raw, row.path)))
    return Comparison(entry.text("baseline"), tuple(rows),
                      entry.text_or_none("baseline_engine") or "",
                      entry.text_or_none("current_engine") or "",
                      entry.integer("baseline_windows", 0), entry.integer("current_windows", 0),
                      entry.text_or_none("hardware_note"), entry.text_or_none("cross_check"),
                      entry.text_or_none("missing"))


def _higher_is_better(metric: str) -> bool:
    try:
        return metric_info(metric).higher_is_better
    except KeyError:
        return False


def _point(row: Fields) -> LoadPoint:
    point = LoadPoint.from_json(row)
    if point.cache_hit_rate is None and "cached_share" in row:  # the prefix cache's rows
        from dataclasses import replace

        return replace(point, cache_hit_rate=row.number_or_none("cached_share"))
    return point


def _search(entry: Fields) -> RecordedSearch:
    kind = entry.text("kind")
    provenance = Provenance.from_json(entry)
    rows = tuple(_point(row) for row in entry.objects("rows"))
    if kind == "capacity":
        probes = tuple(ProbeOutcome(row.number("load"), row.flag("passed"), row.texts("broke"),
                                    row.number_or_none("headroom"), row.number_or_none("goodput"),
                                    point.duration_s, point.stopped_early, point)
                       for row, point in zip(entry.objects("rows"), rows, strict=True))
        search = CapacityResult(entry.text("dimension"), entry.number_or_none("capacity"),
                                entry.number_or_none("first_failing"), probes,
                                entry.text("stop_reason"), entry.number("elapsed_s", 0.0),
                                entry.number("budget_s", 0.0))
        shape = entry.obj_or_none("shape")
        compared = entry.obj_or_none("comparison")
        return RecordedCapacity(
            provenance, _served(entry),
            LoadShape.from_json(shape) if shape is not None else LoadShape.closed(1), search,
            entry.number_map("slo_lines"), entry.text_or_none("chart_png"),
            entry.each("verdicts", _verdict),
            None if compared is None else compared.text_or_none("baseline"),
            not_compared=None if compared is None else compared.text_or_none("missing"))
    if kind == "prefix_cache":
        if len(rows) != 2:
            raise JSONDecodeError(f"{entry.path}.rows: a prefix cache test keeps 2 rows (cold "
                                  f"and warm), got {len(rows)}")
        return RecordedPrefixCache(provenance, _served(entry),
                                   CacheGain(entry.integer("document_tokens"), rows[0], rows[1]))
    calls = tuple(int(n) for n in entry.numbers("calls") if n is not None)
    return RecordedSweep(provenance, _served(entry), entry.text("dimension"), rows, calls,
                         entry.number_map("slo_lines"), entry.text_or_none("chart_png"),
                         entry.text_or_none("left_out"))

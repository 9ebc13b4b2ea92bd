"""One Prometheus scrape, parsed: the samples by name and value, read with prometheus_client.

:func:`parse_exposition` reads the Prometheus text format 0.0.4 and OpenMetrics text (``+Inf``,
``NaN``, exemplars, timestamps, UTF-8 quoted names such as ``{"name.with.dots", l="v"}``)
through :func:`prometheus_client.parser.text_string_to_metric_families`.  That parser gives up
on the whole text at the first line it cannot read; one odd line must not cost the whole
scrape, so then the text is read again line by line and the lines that fail are counted in
:attr:`Exposition.invalid_lines`.

prometheus_client renames the samples of a family declared ``# TYPE x counter`` to
``x_total`` (and names a counter family without ``_total``); :meth:`Exposition.counter`
tries every name with and without ``_total``, so counters are found either way.

Speed, measured for a scrape every 0.5 s: a vLLM-like page of 2,950 lines (316 KiB: 40
families, 30 histograms of 20 buckets x 4 label sets) parses in 66 ms; the hand-written parser
this replaced took 25 ms; with one bad line (the line-by-line fallback) 177 ms (Python 3.11,
prometheus_client 0.26, one 2.6 GHz Xeon core).  A whole page is parsed only just before and
just after the measured window; the gauge polls inside it parse only the gauges' lines
(``server_metrics._lines_of``: 0.7 ms per poll on such a page), so the load generator's
process, whose GIL the polling thread shares, is not held up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Exposition", "Sample", "parse_exposition"]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float
    family: str = ""  # the family it belongs to (x for x_bucket); its own name if untyped


@dataclass(frozen=True)
class Exposition:
    """One scrape, parsed: its samples, the ``# TYPE`` of each typed family (a counter under
    its name with and without ``_total``) and how many lines could not be read."""

    samples: tuple[Sample, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)
    invalid_lines: int = 0

    def total(self, name: str, *, average: bool = False) -> float | None:
        """Sum (or mean) over label sets of the samples called exactly ``name``; NaN samples
        are left out; None when there is none."""
        values = [s.value for s in self.samples if s.name == name and not math.isnan(s.value)]
        if not values:
            return None
        total = math.fsum(values)
        return total / len(values) if average else total

    def counter(self, names: Iterable[str]) -> float | None:
        """The first of ``names`` present, each also tried with and without ``_total``
        (OpenMetrics names the family without it, the sample with it)."""
        for name in names:
            other = name.removesuffix("_total") if name.endswith("_total") else name + "_total"
            for candidate in (name, other):
                value = self.total(candidate)
                if value is not None:
                    return value
        return None

    def histogram(self, names: Iterable[str]) -> tuple[float, float] | None:
        """(sum, count) of the first histogram (or summary) of ``names`` present."""
        for name in names:
            total, count = self.total(name + "_sum"), self.total(name + "_count")
            if total is not None and count is not None:
                return total, count
        return None

    def gauge(self, names: Iterable[str], *, average: bool = False) -> float | None:
        for name in names:
            value = self.total(name, average=average)
            if value is not None:
                return value
        return None


def parse_exposition(text: str) -> Exposition:
    """Parse Prometheus text format (0.0.4) or OpenMetrics text.  Lines that cannot be read
    are counted, not raised: one odd line must not cost the whole scrape."""
    samples: list[Sample] = []
    types: dict[str, str] = {}
    try:
        _collect(text_string_to_metric_families(text), samples, types)
    except ValueError:
        return _parse_line_by_line(text)
    return Exposition(tuple(samples), types)


def _parse_line_by_line(text: str) -> Exposition:
    """The slow path, for a text with unreadable lines: each line on its own, a sample line
    after its family's ``# TYPE`` line so that it is named as in a whole-text parse."""
    samples: list[Sample] = []
    types: dict[str, str] = {}
    invalid = 0
    type_line = ""
    for raw in text.split("\n"):  # as prometheus_client splits; label values may hold U+2028
        line = raw.strip()
        if not line:
            continue
        comment = line.startswith("#")
        try:
            families = list(text_string_to_metric_families(
                line if comment else f"{type_line}\n{line}"))
        except ValueError:
            invalid += 1
            continue
        if comment and line[1:].split(None, 1)[:1] == ["TYPE"]:
            type_line = line
        _collect(families, samples, types)
    return Exposition(tuple(samples), types, invalid)


def _collect(families: Iterable[Metric], samples: list[Sample], types: dict[str, str]) -> None:
    # Every family's samples: a sample that does not fit the family its `# TYPE` announced
    # comes back as a family of its own, typed "unknown".
    for family in families:
        if family.type != "unknown":
            types[family.name] = family.type
            if family.type == "counter":
                types[family.name + "_total"] = family.type
        samples.extend(Sample(s.name, s.labels, float(s.value), family.name)
                       for s in family.samples)

"""Every metric family a Prometheus endpoint exposed, over one measured window.

``--llmperf-metrics-url`` (and a launched engine's own ``/metrics``) is scraped just before the
measured window and just after it, and its gauges are polled during it
(:mod:`pytest_llmperf.observe.family_capture`).  What a window keeps of each family:

- a **counter**: ``delta`` (after minus before; none when it went down: the server restarted)
  and ``rate`` (``delta`` per second between the two scrapes);
- a **histogram**: the window's own distribution, from the deltas of its buckets: ``count``,
  ``sum``, ``mean`` (``sum / count``) and any quantile (``median``, ``p95``, ``p99.9``) read
  from the buckets as Prometheus' ``histogram_quantile`` reads them (linear within the bucket
  it falls in; a quantile in the ``+Inf`` bucket reads as the largest finite bound);
- a **summary**: ``count``, ``sum`` and ``mean`` (its quantiles cover the server's whole life,
  not the window: left out);
- a **gauge**: ``peak``, ``mean`` and ``min`` over the polls, the scrapes before and after
  included; an **untyped** family (no ``# TYPE``) is read as a gauge and a counter both.

Several label sets of one family are summed (a counter's deltas, a histogram's buckets); a
gauge's are summed at each poll too, but a ratio (a name ending ``_perc``, ``_percent``,
``_ratio``, ``_usage``, ``_util`` or ``_utilization``: a KV cache's fill) is averaged: two
engines at 50 % are not "100 % full".

Over several URLs (:func:`combine`) counters and histograms are summed (replicas' tokens and
latencies add up; give replicas or the router in front of them, not both), and a gauge is the
largest URL's (its polls are not simultaneous across URLs, so a sum would be a guess).

An SLO names a family and a statistic: ``"server[vllm:num_preemptions_total].delta <= 0"``
(:func:`server_value`).  A counter is found with or without its ``_total``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_llmperf.results.jsonfields import (
    Fields,
    JSONDecodeError,
    JSONObject,
    json_number,
    read_number,
    rounded,
)
from pytest_llmperf.results.percentiles import quantile_of

__all__ = [
    "STATISTICS",
    "FamilyWindow",
    "ScrapedFamilies",
    "combine",
    "family_of",
    "family_statistics",
    "histogram_quantile",
    "is_ratio",
    "is_server_metric",
    "server_value",
]

# What an SLO may ask of each kind of family; a histogram also takes any quantile.
STATISTICS: Mapping[str, tuple[str, ...]] = {
    "counter": ("delta", "rate"),
    "histogram": ("count", "sum", "mean", "median", "pNN"),
    "summary": ("count", "sum", "mean"),
    "gauge": ("peak", "mean", "min"),
    "untyped": ("delta", "rate", "peak", "mean", "min"),
}
_ALL_STATISTICS = frozenset(s for stats in STATISTICS.values() for s in stats)
_RATIO_ENDINGS = ("_perc", "_percent", "_ratio", "_usage", "_util", "_utilization")


def is_ratio(family: str) -> bool:
    """A gauge whose label sets are averaged, not summed (a fill or utilization ratio)."""
    return family.endswith(_RATIO_ENDINGS)


def family_statistics(statistic: str) -> str | None:
    """Why ``statistic`` is no statistic of any family (None: it is one)."""
    if statistic in _ALL_STATISTICS or quantile_of(statistic) is not None:
        return None
    return (f"unknown statistic {statistic!r}: a counter takes delta or rate, a histogram "
            "count, sum, mean, median or a percentile such as p95, a gauge peak, mean or min")


@dataclass(frozen=True)
class FamilyWindow:
    """One family over one window (see the module docstring); a figure it cannot have is None."""

    kind: str  # counter, histogram, summary, gauge or untyped
    delta: float | None = None  # counter, untyped: after - before
    count: float | None = None  # histogram, summary: Δ observations
    total: float | None = None  # histogram, summary: Δ sum of observations
    # histogram: (upper bound, Δ cumulative count) by bound, +Inf last
    buckets: tuple[tuple[float, float], ...] = ()
    peak: float | None = None  # gauge, untyped: over the polls and the two scrapes
    mean: float | None = None
    low: float | None = None
    samples: int = 0  # gauge readings taken

    def value(self, statistic: str, seconds: float) -> float | None:
        """``statistic`` of this family over a window of ``seconds``; None if it has none."""
        if self.kind in ("counter", "untyped") and statistic in ("delta", "rate"):
            if self.delta is None:
                return None
            return self.delta if statistic == "delta" else (
                self.delta / seconds if seconds > 0 else None)
        if self.kind in ("gauge", "untyped") and statistic in ("peak", "mean", "min"):
            return {"peak": self.peak, "mean": self.mean, "min": self.low}[statistic]
        if self.kind in ("histogram", "summary"):
            if statistic == "count":
                return self.count
            if statistic == "sum":
                return self.total
            if statistic == "mean":
                return self.total / self.count if self.count and self.total is not None else None
            quantile = quantile_of(statistic)
            if self.kind == "histogram" and quantile is not None:
                return histogram_quantile(quantile, self.buckets)
        return None

    def summary(self, seconds: float) -> dict[str, float]:
        """The figures a report shows of this family (those it has)."""
        names = {"counter": ("delta", "rate"), "histogram": ("count", "mean", "p50", "p95"),
                 "summary": ("count", "mean"), "gauge": ("peak", "mean"),
                 "untyped": ("delta", "peak")}[self.kind]
        values = {name: self.value(name, seconds) for name in names}
        return {name: value for name, value in values.items()
                if value is not None and math.isfinite(value)}

    def to_json(self) -> JSONObject:
        out: JSONObject = {"kind": self.kind}
        for name in ("delta", "count", "total", "peak", "mean", "low"):
            value = getattr(self, name)
            if value is not None:
                out[name] = rounded(value)
        if self.buckets:
            out["buckets"] = [[json_number(bound), rounded(count)]
                              for bound, count in self.buckets]
        if self.samples:
            out["samples"] = self.samples
        return out

    @classmethod
    def from_json(cls, fields: Fields) -> FamilyWindow:
        buckets = tuple(_bucket(path, item) for path, item in fields.items("buckets"))
        return cls(fields.text("kind"), fields.number_or_none("delta"),
                   fields.number_or_none("count"), fields.number_or_none("total"), buckets,
                   fields.number_or_none("peak"), fields.number_or_none("mean"),
                   fields.number_or_none("low"), int(fields.number_or_none("samples") or 0))


@dataclass(frozen=True)
class ScrapedFamilies:
    """Every family one URL exposed over one window, and why some figures are missing."""

    url: str
    families: Mapping[str, FamilyWindow]  # by family name (a counter's without ``_total``)
    seconds: float  # between the scrapes before and after the window
    notes: tuple[str, ...] = ()

    def find(self, name: str) -> FamilyWindow | None:
        """The family ``name`` (a counter also as ``NAME_total`` or without it)."""
        if name in self.families:
            return self.families[name]
        other = name.removesuffix("_total") if name.endswith("_total") else name + "_total"
        return self.families.get(other)

    def to_json(self) -> JSONObject:
        return {"url": self.url, "seconds": rounded(self.seconds), "notes": list(self.notes),
                "families": {name: family.to_json()
                             for name, family in sorted(self.families.items())}}

    @classmethod
    def from_json(cls, fields: Fields) -> ScrapedFamilies:
        families = fields.obj("families")
        return cls(fields.text("url"),
                   {name: FamilyWindow.from_json(families.obj(name)) for name in families.names()},
                   fields.number("seconds"), fields.texts("notes"))


def is_server_metric(metric: str) -> bool:
    """``server[NAME]``: a family of a server's own metrics, as an SLO names it."""
    return metric.startswith("server[") and metric.endswith("]")


def family_of(metric: str) -> str:
    """``server[NAME]`` -> ``NAME``."""
    return metric[len("server["):-1]


def combine(scraped: Sequence[ScrapedFamilies]) -> ScrapedFamilies | None:
    """Several URLs' families as one (see the module docstring); None when there is none."""
    if not scraped:
        return None
    if len(scraped) == 1:
        return scraped[0]
    names = dict.fromkeys(name for one in scraped for name in one.families)
    families = {}
    for name in names:
        found = [one.families[name] for one in scraped if name in one.families]
        families[name] = _combined(found)
    return ScrapedFamilies(", ".join(one.url for one in scraped), families,
                           max(one.seconds for one in scraped),
                           tuple(note for one in scraped for note in one.notes))


def _combined(found: Sequence[FamilyWindow]) -> FamilyWindow:
    kinds = {family.kind for family in found}
    if len(found) == 1 or len(kinds) > 1:
        return found[0]  # one URL has it, or URLs disagree on what it is: the first's
    first = found[0]
    deltas = [family.delta for family in found]
    delta = None if None in deltas else math.fsum(d for d in deltas if d is not None)
    if first.kind in ("histogram", "summary"):
        counts = [family.count for family in found]
        totals = [family.total for family in found]
        bounds = {tuple(bound for bound, _ in family.buckets) for family in found}
        buckets: tuple[tuple[float, float], ...] = ()
        if len(bounds) == 1:  # the same buckets everywhere: add them up
            buckets = tuple((bound, math.fsum(family.buckets[i][1] for family in found))
                            for i, (bound, _) in enumerate(first.buckets))
        return FamilyWindow(first.kind,
                            count=None if None in counts else math.fsum(c or 0 for c in counts),
                            total=None if None in totals else math.fsum(t or 0 for t in totals),
                            buckets=buckets)
    peaks = [family.peak for family in found if family.peak is not None]
    means = [family.mean for family in found if family.mean is not None]
    lows = [family.low for family in found if family.low is not None]
    return FamilyWindow(first.kind, delta=delta, peak=max(peaks, default=None),
                        mean=max(means, default=None), low=min(lows, default=None),
                        samples=sum(family.samples for family in found))


def server_value(scraped: Sequence[ScrapedFamilies], family: str,
                 statistic: str) -> tuple[float | None, str | None]:
    """(the value of ``server[family].statistic`` over the URLs, None) or (None, why not:
    no URL was scraped, the family is not there (naming those that are), or it has no such
    statistic)."""
    together = combine(scraped)
    if together is None:
        return None, ("no metrics endpoint was scraped: give --llmperf-metrics-url (attached "
                      "servers) or launch an engine that serves /metrics")
    found = together.find(family)
    if found is None:
        present = sorted(together.families)
        listed = ", ".join(present[:40]) + (f" and {len(present) - 40} more"
                                            if len(present) > 40 else "")
        hint = _closest(family, present)
        return None, (f"no family {family!r} at {together.url}"
                      + (f" (did you mean {hint!r}?)" if hint else "")
                      + (f"; its families: {listed}" if present else
                         "; no family was read from it" + _first_note(together.notes)))
    value = found.value(statistic, together.seconds)
    if value is not None and math.isfinite(value):
        return value, None
    allowed = STATISTICS[found.kind]
    if statistic not in allowed and quantile_of(statistic) is None:
        return None, f"{family} is a {found.kind}: its statistics are {', '.join(allowed)}"
    if found.kind != "histogram" and quantile_of(statistic) is not None:
        return None, f"{family} is a {found.kind}: its statistics are {', '.join(allowed)}"
    return None, f"{family} gave no {statistic} over this window" + _first_note(together.notes)


def histogram_quantile(quantile: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``quantile`` (0..1) of a histogram's cumulative buckets, as Prometheus reads it;
    None with no observation."""
    if not buckets or not math.isinf(buckets[-1][0]):
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = quantile * total
    lower, below = 0.0, 0.0
    for index, (bound, cumulative) in enumerate(buckets):
        if cumulative >= rank:
            if math.isinf(bound):  # beyond the last finite bound: that bound
                return buckets[index - 1][0] if index else None
            if index == 0 and bound <= 0:
                return bound
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return None


def _bucket(path: str, item: object) -> tuple[float, float]:
    """A stored ``[upper bound, cumulative count]`` pair (the bound ``"inf"`` for +Inf)."""
    pair = item if isinstance(item, list) and len(item) == 2 else None
    numbers = [read_number(value) for value in pair] if pair else []
    if len(numbers) != 2 or numbers[0] is None or numbers[1] is None:
        raise JSONDecodeError(f"{path}: expected [upper bound, count], got {item!r}")
    return numbers[0], numbers[1]


def _closest(name: str, names: Iterable[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, list(names), n=1, cutoff=0.75)
    return matches[0] if matches else None


def _first_note(notes: Sequence[str]) -> str:
    return f" ({notes[0]})" if notes else ""

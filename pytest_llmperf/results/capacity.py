"""A capacity search's result: the highest load at which every SLO held, its probes, and how sure
it is (:mod:`pytest_llmperf.searches.capacity` runs the search)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_llmperf.results.jsonfields import Fields, JSONObject, rounded
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.metrics import RunMetrics
from pytest_llmperf.results.window import WindowResult

__all__ = ["CLIFF_HEADROOM", "CapacityResult", "ProbeOutcome"]

# A boundary is a cliff when the last passing load used at most this share of every limit
# (results.probe_rules.headroom) and the next load missed one.
CLIFF_HEADROOM = 0.8


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe: its load and whether every SLO held there."""

    load: float
    passed: bool
    broke: tuple[str, ...] = ()  # the SLOs it missed, as their verdicts describe them
    headroom: float | None = None  # searches.probe_rules.headroom of its verdicts
    goodput: float | None = None
    duration_s: float = 0.0
    stopped_early: str | None = None
    point: LoadPoint | None = None  # its window's figures, for the table and the chart
    # The probe's whole window; only while the search runs (a stored search keeps the point).
    window: WindowResult | None = field(default=None, compare=False, repr=False)
    # The client could not offer this load (its machine ran out of file descriptors or ports):
    # the probe says nothing of the server, and the search stops there.
    client_limit: str | None = None
    # Why the search did not count this probe, neither as a pass nor as a fail: its window was
    # marked disturbed or client-bound ("disturbed: other_cpu_pct 76 > 25; measured again").
    discarded: str | None = None
    # A probe that settles a capacity (searches.capacity_settle) is judged with this many
    # earlier requests at its load pooled with its own; 0: on its own requests.
    pooled: int = 0
    # Held on its point estimates, but its pooled requests could not show at the stated
    # confidence that every percentile SLO holds there (searches.capacity_settle): not counted
    # as holding (``passed`` is False), and not a failure either.
    undecided: str | None = None

    @property
    def counted(self) -> bool:
        """The search judged the server by this probe (it was not discarded)."""
        return self.discarded is None

    def to_json(self) -> JSONObject:
        return {"load": self.load, "passed": self.passed, "broke": list(self.broke),
                "headroom": rounded(self.headroom), "goodput": rounded(self.goodput),
                "duration_s": round(self.duration_s, 3), "stopped_early": self.stopped_early,
                "point": None if self.point is None else self.point.to_json(),
                "client_limit": self.client_limit,
                **({"discarded": self.discarded} if self.discarded is not None else {}),
                **({"pooled": self.pooled} if self.pooled else {}),
                **({"undecided": self.undecided} if self.undecided is not None else {})}

    @classmethod
    def from_json(cls, fields: Fields) -> ProbeOutcome:
        point = fields.obj_or_none("point")
        return cls(fields.number("load"), fields.flag("passed"), fields.texts("broke"),
                   fields.number_or_none("headroom"), fields.number_or_none("goodput"),
                   fields.number("duration_s", 0.0), fields.text_or_none("stopped_early"),
                   None if point is None else LoadPoint.from_json(point),
                   client_limit=fields.text_or_none("client_limit"),
                   discarded=fields.text_or_none("discarded"),
                   pooled=fields.integer("pooled", 0),
                   undecided=fields.text_or_none("undecided"))


@dataclass(frozen=True)
class CapacityResult:
    dimension: str  # "users" or "rate"
    capacity: float | None  # highest load where every SLO held (None: not even the lowest)
    first_failing: float | None  # lowest load above it where an SLO broke (None: none found)
    probes: tuple[ProbeOutcome, ...]
    # "boundary found", "budget", "maximum load", "minimum load failed", "client limit",
    # "disturbed" (a load's probes were disturbed again and again: see ``disturbed``)
    stop_reason: str
    elapsed_s: float
    budget_s: float
    # What pooling the capacity load's probes decided (searches.capacity_settle): "every SLO
    # decided on 64 requests of 3 probes (96.24 % confidence)", or why not; ``decided`` says
    # which.  None where the search did not settle (no capacity, or no percentile SLO).
    settled: str | None = None
    decided: bool | None = None

    def to_json(self) -> JSONObject:
        """The search and its probes (each probe's figures, not its requests); ``summary``,
        ``goodput`` and ``boundary`` are written for readers, derived again on reading."""
        return {"dimension": self.dimension, "capacity": self.capacity,
                "first_failing": self.first_failing,
                "probes": [probe.to_json() for probe in self.probes],
                "stop_reason": self.stop_reason, "elapsed_s": round(self.elapsed_s, 1),
                "budget_s": self.budget_s, "summary": self.summary,
                "goodput": rounded(self.goodput), "boundary": self.boundary,
                "broke_first": list(self.broke_first),
                **({"settled": self.settled, "decided": self.decided}
                   if self.settled is not None else {})}

    @classmethod
    def from_json(cls, fields: Fields) -> CapacityResult:
        return cls(fields.text("dimension"), fields.number_or_none("capacity"),
                   fields.number_or_none("first_failing"),
                   fields.each("probes", ProbeOutcome.from_json), fields.text("stop_reason"),
                   fields.number("elapsed_s", 0.0), fields.number("budget_s", 0.0),
                   fields.text_or_none("settled"), fields.flag_or_none("decided"))

    @property
    def unit(self) -> str:
        return "users" if self.dimension == "users" else "req/s"

    def count(self, load: float | None) -> tuple[int, int]:
        """(passed, probed) at ``load``, of the probes counted (not discarded)."""
        at = [p for p in self.counted if load is not None and p.load == load]
        return sum(p.passed for p in at), len(at)

    @property
    def counted(self) -> tuple[ProbeOutcome, ...]:
        """The probes the search judged the server by: all but those discarded."""
        return tuple(p for p in self.probes if p.counted)

    @property
    def disturbed(self) -> str | None:
        """Why the result is not sure of its edge, when the search ended wanting a measurement
        it could not get: its last probe was discarded (disturbed or client-bound) and could
        not be measured again, within the budget or in the tries allowed.  A result with this
        set is inconclusive to anything holding its capacity to a limit or a baseline."""
        if not self.probes or self.probes[-1].counted \
                or self.stop_reason not in ("disturbed", "budget"):
            return None
        last = self.probes[-1]
        marks = sorted({(p.discarded or "").split(":", 1)[0] for p in self.probes
                        if p.load == last.load and not p.counted} - {""})
        mark = " and ".join(marks) or "disturbed"
        how = "within the budget" if self.stop_reason == "budget" else "in the tries allowed"
        tries = sum(1 for p in self.probes if p.load == last.load and not p.counted)
        probes = "probes" if tries > 1 else "probe"
        were = "were" if tries > 1 else "was"
        return (f"{mark}: the {probes} at {self.load_text(last.load)} {were} {mark} and could "
                f"not be measured again {how}")

    @property
    def single_probe_edges(self) -> tuple[float, ...]:
        """The ends of the boundary that rest on one probe: the capacity passed once, or the
        lowest failing load was probed once (a load probed twice was repeated by the search's
        own rule, and its count says how it went; an undecided end, and a capacity its settling
        decided, say how sure they are on their own)."""
        ends = (self.first_failing,) if self.decided else (self.capacity, self.first_failing)
        return tuple(end for end in ends
                     if end is not None and self.count(end)[1] == 1
                     and not any(p.undecided for p in self.counted if p.load == end))

    @property
    def broke_first(self) -> tuple[str, ...]:
        """What failed at the lowest failing load (empty when nothing failed)."""
        failing = [p for p in self.counted if not p.passed]
        if not failing:
            return ()
        lowest = min(p.load for p in failing)
        return next(p.broke for p in failing if p.load == lowest)

    @property
    def boundary(self) -> str | None:
        """``cliff`` when the capacity load used at most 80 % of every limit and the next load
        missed one; ``gradual`` when it came closer first; None without both ends."""
        if self.capacity is None or self.first_failing is None:
            return None
        shares = [p.headroom for p in self.counted
                  if p.load == self.capacity and p.headroom is not None]
        if not shares:
            return None
        return "cliff" if max(shares) <= CLIFF_HEADROOM else "gradual"

    @property
    def goodput(self) -> float | None:
        """Goodput at the capacity load (the mean over its probes)."""
        values = [p.goodput for p in self.counted
                  if p.load == self.capacity and p.goodput is not None]
        return sum(values) / len(values) if values else None

    @property
    def metric(self) -> str:
        """The capacity metric this search measures (results.metrics.CAPACITY)."""
        return "capacity_max_concurrency" if self.dimension == "users" else "capacity_max_rate"

    def metrics(self) -> RunMetrics:
        """The search's results as metrics an SLO can name (``capacity_max_concurrency >= 8``);
        no capacity found counts as 0."""
        values = {self.metric: self.capacity or 0.0}
        if self.goodput is not None:
            values["capacity_goodput"] = self.goodput
        return RunMetrics({}, values, ())

    def unmeasured(self) -> dict[str, str]:
        """Why the capacity metrics this search does not measure are missing."""
        other = ("capacity_max_rate" if self.dimension == "users"
                 else "capacity_max_concurrency")
        return {other: f"this capacity search is over {self.dimension}, not "
                       f"{'rate' if self.dimension == 'users' else 'users'}",
                "capacity_goodput": "no probe at the capacity load measured a goodput"}

    def load_text(self, load: float | None) -> str:
        if load is None:
            return "-"
        if self.dimension == "rate":
            return f"{load:g} req/s"
        return f"{load:g} user{'' if load == 1 else 's'}"

    @property
    def summary(self) -> str:
        """``max 9 users: 9 users passed 2 of 2, 10 users failed 2 of 2 (ttft_ms.p95 ...)``;
        ``max 2 users (disturbed: the probes at 3 users were disturbed and could not be measured
        again within the budget): ...; rests on one probe at 2 users``."""
        passed, probed = self.count(self.capacity)
        disturbed = f" ({self.disturbed})" if self.disturbed else ""
        counted = self.counted
        if self.capacity is None and not counted:
            text = f"no capacity found{disturbed}: no probe could be counted"
        elif self.capacity is None:
            lowest = min(p.load for p in counted)
            text = (f"no capacity found{disturbed}: no load probed held every SLO, down to "
                    f"{self.load_text(lowest)}")
        else:
            text = (f"max {self.load_text(self.capacity)}{disturbed}: "
                    f"{self.load_text(self.capacity)} passed {passed} of {probed}")
        undecided = [p for p in counted if p.undecided and p.load == self.first_failing]
        if undecided:
            last = undecided[-1]
            held = last.pooled + (last.point.requests if last.point else 0)
            text += (f", {self.load_text(self.first_failing)} undecided (held on {held} "
                     f"requests, not shown to hold)")
        elif self.first_failing is not None:
            ok, tried = self.count(self.first_failing)
            text += f", {self.load_text(self.first_failing)} failed {tried - ok} of {tried}"
        noisy = sorted({p.load for p in counted if not any(u.load == p.load for u in undecided)
                        and 0 < self.count(p.load)[0] < self.count(p.load)[1]})
        if noisy:
            text += "; passed and failed at " + ", ".join(self.load_text(x) for x in noisy)
        if self.stop_reason == "budget":
            text += f"; the budget ({self.budget_s:g} s) ran out first"
            if self.capacity is None:
                text += ": a lower load may hold"
            elif self.first_failing is None:
                text += ": the capacity may be higher"
        elif self.stop_reason == "minimum load failed":
            text += " (the lowest load searched)"
        elif self.stop_reason == "client limit":
            limited = next(p for p in self.probes if p.client_limit)
            text += (f"; the client could not offer {self.load_text(limited.load)} "
                     f"({limited.client_limit}): the capacity may be higher")
        elif self.stop_reason == "maximum load":
            text += "; every SLO held up to the maximum load searched: the capacity may be higher"
        single = self.single_probe_edges
        if single:
            each = " each" if len(single) > 1 else ""
            text += (f"; rests on one probe{each} at "
                     f"{' and '.join(map(self.load_text, single))}")
        if self.settled:
            text += f"; {self.load_text(self.capacity)}: {self.settled}"
        return text

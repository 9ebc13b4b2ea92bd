"""Load shapes: how requests are offered to the server.

- Closed loop (:meth:`LoadShape.closed`): N users, each sending its next request when its last
  one ends; with ``ramp_s`` the users join one by one, evenly over that many seconds.
- Open loop (:meth:`LoadShape.open`): requests arrive at a rate whatever the server does.
  ``constant`` arrivals are evenly spaced; ``poisson`` has exponential gaps; ``gamma`` has gamma
  gaps whose shape is ``burstiness`` (1 is Poisson, below 1 burstier, above 1 more even: vLLM's
  ``--burstiness``).  A rate of ``inf`` sends every request at once.  ``max_concurrency`` caps the
  requests in flight; arrivals beyond it wait in the client, and that wait is measured
  (``slip_ms``).
- Trace replay (:meth:`LoadShape.replay`): requests arrive at a recorded trace's offsets
  (``offsets``, seconds from the first; prompts.trace_files); ``rate`` is their mean rate.
- Staged rates (:meth:`LoadShape.staged`): the rate of an open loop held or ramped stage by
  stage (``stages``, results.rate_stages); ``rate`` is their mean.

A shape is part of every result (what load was offered), so it lives with the results; the
arrival schedule that realises it is :func:`pytest_llmperf.load.shapes.arrival_offsets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError, JSONObject, json_number
from pytest_llmperf.results.rate_stages import RateStage, parse_rate_stages, stages_text

__all__ = ["ARRIVALS", "Arrivals", "LoadShape"]

Arrivals = Literal["constant", "poisson", "gamma", "trace"]
ARRIVALS: tuple[str, ...] = ("constant", "poisson", "gamma", "trace")


@dataclass(frozen=True)
class LoadShape:
    """One load: closed loop (``users``) or open loop (``rate``), never both."""

    users: int | None = None
    rate: float | None = None  # requests per second; math.inf: all at once
    arrivals: Arrivals = "poisson"
    burstiness: float = 1.0  # gamma shape; only for "gamma"
    max_concurrency: int | None = None  # open loop: most requests in flight
    ramp_s: float = 0.0  # closed loop: users join evenly over this many seconds
    seed: int = 0  # open loop: the arrival schedule's seed
    # A replayed trace's arrival offsets (seconds from the first), as replayed; not stored
    # with results (the prompt origin names the trace, its slice and its speed).
    offsets: tuple[float, ...] = field(default=(), repr=False)
    # Staged rates: the open loop's rate stage by stage (one stage: a ramp's own window).
    stages: tuple[RateStage, ...] = ()

    def __post_init__(self) -> None:
        if (self.users is None) == (self.rate is None):
            raise ValueError("a load shape has users (closed loop) or a rate (open loop)")
        if self.users is not None and self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be > 0 requests per second (or inf), got {self.rate}")
        if self.arrivals not in ARRIVALS:
            raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}, "
                             f"got {self.arrivals!r}")
        if not (self.burstiness > 0 and math.isfinite(self.burstiness)):
            raise ValueError(f"burstiness must be a number > 0, got {self.burstiness}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if not (self.ramp_s >= 0 and math.isfinite(self.ramp_s)):
            raise ValueError(f"ramp_s must be >= 0 seconds, got {self.ramp_s}")
        if self.users is None and self.ramp_s:
            raise ValueError("ramp_s is for closed loops; an open loop's rate sets its pace")
        if self.offsets and (self.arrivals != "trace" or self.offsets[0] != 0.0 or any(
                b < a for a, b in zip(self.offsets, self.offsets[1:], strict=False))):
            raise ValueError("a trace's offsets are for trace arrivals, start at 0 and never "
                             "go back")
        if self.stages and (self.users is not None or self.arrivals == "trace"):
            raise ValueError("rate stages are for an open loop's own arrivals (constant, "
                             "poisson or gamma)")

    @classmethod
    def closed(cls, users: int, *, ramp_s: float = 0.0) -> LoadShape:
        return cls(users=users, ramp_s=ramp_s)

    @classmethod
    def open(cls, rate: float, *, arrivals: Arrivals | None = None, burstiness: float = 1.0,
             max_concurrency: int | None = None, seed: int = 0) -> LoadShape:
        """Arrivals default to Poisson, or gamma when a burstiness other than 1 is given."""
        chosen: Arrivals = arrivals or ("poisson" if burstiness == 1.0 else "gamma")
        return cls(rate=rate, arrivals=chosen, burstiness=burstiness,
                   max_concurrency=max_concurrency, seed=seed)

    @classmethod
    def replay(cls, offsets: tuple[float, ...], *, rate: float | None = None,
               max_concurrency: int | None = None) -> LoadShape:
        """Arrivals at a trace's ``offsets``; ``rate`` the trace's mean (default: the
        offsets' own; all at once: inf)."""
        if not offsets:
            raise ValueError("a replayed trace needs at least one arrival")
        if rate is None:
            span = offsets[-1]
            rate = (len(offsets) - 1) / span if len(offsets) > 1 and span > 0 else math.inf
        return cls(rate=rate, arrivals="trace", max_concurrency=max_concurrency,
                   offsets=offsets)

    @classmethod
    def staged(cls, stages: tuple[RateStage, ...], *, arrivals: Arrivals | None = None,
               burstiness: float = 1.0, max_concurrency: int | None = None,
               seed: int = 0) -> LoadShape:
        """An open loop whose rate follows ``stages``; ``rate`` is their mean."""
        if not stages:
            raise ValueError("staged rates need at least one stage")
        chosen: Arrivals = arrivals or ("poisson" if burstiness == 1.0 else "gamma")
        rate = sum(s.mass for s in stages) / sum(s.seconds for s in stages)
        return cls(rate=rate, arrivals=chosen, burstiness=burstiness,
                   max_concurrency=max_concurrency, seed=seed, stages=stages)

    @property
    def duration_s(self) -> float | None:
        """A staged shape's length in seconds (None: its window is sized by its caller)."""
        return sum(s.seconds for s in self.stages) if self.stages else None

    @property
    def is_open(self) -> bool:
        return self.rate is not None

    @property
    def load(self) -> float:
        """The number a sweep or a capacity search varies: users, or requests per second."""
        return float(self.rate if self.rate is not None else self.users or 0)

    @property
    def label(self) -> str:
        """``4 users``, ``4 users, 10 s ramp``, ``2 req/s poisson``, ``inf req/s, max 8``,
        ``trace at 2.1 req/s`` (a replayed trace's mean rate)."""
        if self.users is not None:
            text = f"{self.users} user{'s' if self.users != 1 else ''}"
            return text + (f", {self.ramp_s:g} s ramp" if self.ramp_s else "")
        text = f"{self.rate:g} req/s"
        if self.arrivals == "trace":
            text = f"trace at {self.rate:.3g} req/s"
        elif len(self.stages) == 1:
            text = f"{self.stages[0].label} {self.arrivals}"
        elif self.stages:
            text = f"stages {stages_text(self.stages)} {self.arrivals}"
        elif self.rate is not None and math.isfinite(self.rate):
            text += f" {self.arrivals}"
            if self.arrivals == "gamma":
                text += f" (burstiness {self.burstiness:g})"
        return text + (f", max {self.max_concurrency} in flight" if self.max_concurrency else "")

    @property
    def id(self) -> str:
        """A test-id fragment: ``users4``, ``rate2``, ``rate0.5-b0.5``, ``rateinf-max8``."""
        if self.users is not None:
            return f"users{self.users}" + (f"-ramp{self.ramp_s:g}" if self.ramp_s else "")
        text = f"rate{self.rate:g}"
        if self.arrivals == "trace":
            text = "trace"
        elif self.stages:
            text = "stages" if len(self.stages) > 1 else f"ramp{self.stages[0].text}"
        elif self.arrivals == "constant":
            text += "-constant"
        elif self.arrivals == "gamma":
            text += f"-b{self.burstiness:g}"
        return text + (f"-max{self.max_concurrency}" if self.max_concurrency else "")

    def with_load(self, load: float) -> LoadShape:
        """The same shape at another load (a sweep's or capacity search's next point)."""
        if self.users is not None:
            return LoadShape(users=max(1, round(load)), ramp_s=self.ramp_s)
        if self.arrivals == "trace":  # the same recording, faster or slower
            scale = self.load / load if math.isfinite(self.load) else 1.0
            return LoadShape.replay(tuple(o * scale for o in self.offsets),
                                    max_concurrency=self.max_concurrency)
        if self.stages:  # every stage's rate scaled alike
            assert self.rate is not None
            return LoadShape.staged(tuple(s.scaled(load / self.rate) for s in self.stages),
                                    arrivals=self.arrivals, burstiness=self.burstiness,
                                    max_concurrency=self.max_concurrency, seed=self.seed)
        return LoadShape(rate=load, arrivals=self.arrivals, burstiness=self.burstiness,
                         max_concurrency=self.max_concurrency, seed=self.seed)

    def to_json(self) -> JSONObject:
        """What the result store records about the load."""
        if self.users is not None:
            return {"shape": "closed_loop", "users": self.users, "ramp_s": self.ramp_s}
        return {"shape": "open_loop", "rate": json_number(self.rate), "arrivals": self.arrivals,
                "burstiness": self.burstiness, "max_concurrency": self.max_concurrency,
                "seed": self.seed, **({"stages": stages_text(self.stages)} if self.stages else {})}

    @classmethod
    def from_json(cls, fields: Fields) -> LoadShape:
        """The shape :meth:`to_json` wrote (a bad one raises JSONDecodeError naming it)."""
        try:
            if fields.text("shape") == "closed_loop":
                return cls(users=fields.integer("users"), ramp_s=fields.number("ramp_s", 0.0))
            arrivals = fields.text("arrivals")
            stages = fields.text_or_none("stages")
            if arrivals not in ARRIVALS:
                raise ValueError(f"unknown arrivals {arrivals!r}")
            return cls(rate=fields.number("rate"), arrivals=arrivals,  # type: ignore[arg-type]
                       burstiness=fields.number("burstiness", 1.0),
                       max_concurrency=fields.integer_or_none("max_concurrency"),
                       seed=fields.integer("seed", 0),
                       stages=parse_rate_stages(stages) if stages else ())
        except ValueError as exc:
            if isinstance(exc, JSONDecodeError):
                raise
            raise JSONDecodeError(f"{fields.path}: not a load shape: {exc}") from None

"""Load shapes: how requests are offered to the server.

- Closed loop (:meth:`LoadShape.closed`): N users, each sending its next request when its last
  one ends; with ``ramp_s`` the users join one by one, evenly over that many seconds.
- Open loop (:meth:`LoadShape.open`): requests arrive at a rate whatever the server does.
  ``constant`` arrivals are evenly spaced; ``poisson`` has exponential gaps; ``gamma`` has gamma
  gaps whose shape is ``burstiness`` (1 is Poisson, below 1 burstier, above 1 more even: vLLM's
  ``--burstiness``).  A rate of ``inf`` sends every request at once.  ``max_concurrency`` caps the
  requests in flight; arrivals beyond it wait in the client, and that wait is measured
  (``slip_ms``).

Open-loop arrivals come from one schedule of absolute times fixed before the first request
(:func:`arrival_offsets`, seeded), so a slow client cannot lower the rate it offers by sending
late: lateness shows as slip, it never stretches the schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pytest_llmperf.settings.resolve import Settings

__all__ = ["ARRIVALS", "LoadShape", "arrival_offsets", "closed_shape", "open_shape"]

Arrivals = Literal["constant", "poisson", "gamma"]
ARRIVALS: tuple[str, ...] = ("constant", "poisson", "gamma")


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

    @property
    def is_open(self) -> bool:
        return self.rate is not None

    @property
    def load(self) -> float:
        """The number a sweep or a capacity search varies: users, or requests per second."""
        return float(self.rate if self.rate is not None else self.users or 0)

    @property
    def label(self) -> str:
        """``4 users``, ``4 users, 10 s ramp``, ``2 req/s poisson``, ``inf req/s, max 8``."""
        if self.users is not None:
            text = f"{self.users} user{'s' if self.users != 1 else ''}"
            return text + (f", {self.ramp_s:g} s ramp" if self.ramp_s else "")
        text = f"{self.rate:g} req/s"
        if self.rate is not None and math.isfinite(self.rate):
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
        if self.arrivals == "constant":
            text += "-constant"
        elif self.arrivals == "gamma":
            text += f"-b{self.burstiness:g}"
        return text + (f"-max{self.max_concurrency}" if self.max_concurrency else "")

    def with_load(self, load: float) -> LoadShape:
        """The same shape at another load (a sweep's or capacity search's next point)."""
        if self.users is not None:
            return LoadShape(users=max(1, round(load)), ramp_s=self.ramp_s)
        return LoadShape(rate=load, arrivals=self.arrivals, burstiness=self.burstiness,
                         max_concurrency=self.max_concurrency, seed=self.seed)

    def describe(self) -> dict[str, object]:
        """What the result store records about the load."""
        if self.users is not None:
            return {"shape": "closed_loop", "users": self.users, "ramp_s": self.ramp_s}
        return {"shape": "open_loop", "rate": _json_rate(self.rate), "arrivals": self.arrivals,
                "burstiness": self.burstiness, "max_concurrency": self.max_concurrency,
                "seed": self.seed}


def closed_shape(settings: Settings, users: int) -> LoadShape:
    """A closed loop of ``users`` with the run's --llmperf-ramp."""
    return LoadShape.closed(users, ramp_s=settings.ramp)


def open_shape(settings: Settings, rate: float) -> LoadShape:
    """An open loop at ``rate`` with the run's arrivals, burstiness, cap and seed."""
    arrivals: Arrivals | None = None
    if settings.arrivals in ARRIVALS:
        arrivals = settings.arrivals  # type: ignore[assignment]
    return LoadShape.open(rate, arrivals=arrivals, burstiness=settings.burstiness,
                          max_concurrency=settings.max_concurrency, seed=settings.seed)


def _json_rate(rate: float | None) -> float | str | None:
    return "inf" if rate is not None and math.isinf(rate) else rate


def arrival_offsets(shape: LoadShape, count: int) -> list[float]:
    """Seconds from the first arrival to each of ``count`` arrivals of an open-loop shape.

    The first arrival is at 0; the gaps after it are drawn from the shape's distribution with
    mean ``1 / rate`` (numpy's seeded generator: the same seed gives the same schedule).
    """
    import numpy as np  # here, not at import: the plugin's entry imports this module

    if shape.rate is None:
        raise ValueError("a closed-loop shape has no arrival schedule")
    if count < 1:
        return []
    if math.isinf(shape.rate):
        return [0.0] * count
    mean_gap = 1.0 / shape.rate
    if shape.arrivals == "constant":
        gaps = np.full(count - 1, mean_gap)
    else:
        rng = np.random.default_rng(shape.seed)
        k = 1.0 if shape.arrivals == "poisson" else shape.burstiness
        # Gamma(k, theta) with k * theta = mean gap; k = 1 is the exponential.
        gaps = rng.gamma(shape=k, scale=mean_gap / k, size=count - 1)
    return [0.0, *np.cumsum(gaps).tolist()]

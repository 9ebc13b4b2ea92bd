"""Which configuration to deploy: the cheapest whose capacity holds every SLO at the target
load (without prices, the fewest GPUs, then the most headroom), with the margin, what the
capacity rests on, and which configurations the searches cannot tell apart."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_llmperf.configs.figures import Held, TestFigures, told_apart
from pytest_llmperf.configs.prices import Prices, cost_per_million

__all__ = ["Recommendation", "recommend"]


@dataclass(frozen=True)
class Recommendation:
    model: str
    test: str  # the test's name (test_capacity_users)
    dimension: str  # users or rate
    target: float | None  # the load it must hold (None: nothing held anything)
    chosen: TestFigures | None  # None: no configuration holds the target
    lines: tuple[str, ...]  # the verdict first, then the margin, how sure, what ties

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _held(figures: TestFigures) -> Held:
    assert figures.held is not None
    return figures.held


def recommend(group: Sequence[TestFigures], prices: Prices, *, users: int | None = None,
              rate: float | None = None) -> Recommendation | None:
    """The recommendation for one model's test across configurations; None when the test
    judged no load of the dimension asked for (``users`` / ``rate``)."""
    measured = [f for f in group if f.held is not None]
    wanted = "users" if users is not None else "rate" if rate is not None else None
    if wanted is not None:
        measured = [f for f in measured if _held(f).dimension == wanted]
    if not measured:
        return None
    first = measured[0]
    dimension = _held(first).dimension
    measured = [f for f in measured if _held(f).dimension == dimension]
    model, test, text = first.run.model, first.name, _held(first).text
    candidates = [f for f in measured if _held(f).load is not None]
    asked = users if users is not None else rate
    if not candidates:
        lines = [f"No configuration holds every SLO of {test} at any load tried."]
        return Recommendation(model, test, dimension, asked, None, tuple(lines))
    most = max(_held(f).load or 0.0 for f in candidates)
    target = float(asked) if asked is not None else most
    holding = [f for f in candidates if (_held(f).load or 0.0) >= target]
    if not holding:
        best = [f.run.config.label for f in candidates if _held(f).load == most]
        lines = [f"No configuration holds {text(target)} in {test}: the most any held is "
                 f"{text(most)} ({', '.join(best)})."]
        lines += _may_hold(candidates, target)
        return Recommendation(model, test, dimension, target, None, tuple(lines))
    priced = bool(prices) and any(prices.hourly(f.run.config) is not None for f in holding)

    def rank(f: TestFigures) -> tuple[object, ...]:
        headroom = -((_held(f).load or 0.0) - target)
        if priced:
            hourly = prices.hourly(f.run.config)
            cost = cost_per_million(hourly, f.throughput)
            return (hourly is None, hourly or 0.0, cost or math.inf, headroom,
                    f.run.config.label)
        return (f.run.config.gpu_count, headroom, f.run.config.label)

    ranked = sorted(holding, key=rank)
    chosen = ranked[0]
    lines = [_verdict(chosen, ranked, prices, priced, text(target), test)]
    margin = (_held(chosen).load or 0.0) - target
    share = f", {margin / target:.0%}" if target else ""
    lines.append(f"Margin: it held {text(_held(chosen).load)} against a target of "
                 f"{text(target)} ({'+' if margin >= 0 else ''}{margin:g}{share}).")
    lines.append(f"How sure: {_held(chosen).basis}.")
    ties = [f for f in candidates if f is not chosen and not told_apart(_held(chosen), _held(f))]
    for other in ties:
        lines.append(f"{chosen.run.config.label} and {other.run.config.label} cannot be told "
                     f"apart: their capacities overlap within the searches' uncertainty "
                     f"({chosen.run.config.label}: {_bounds(_held(chosen))}; "
                     f"{other.run.config.label}: {_bounds(_held(other))}).")
    lines += _may_hold([f for f in candidates if f not in holding and f not in ties], target)
    if priced:
        unpriced = [f.run.config.label for f in holding if prices.hourly(f.run.config) is None]
        if unpriced:
            lines.append(f"Not priced (give --price for their hardware): {', '.join(unpriced)}.")
    return Recommendation(model, test, dimension, target, chosen, tuple(lines))


def _verdict(chosen: TestFigures, ranked: Sequence[TestFigures], prices: Prices, priced: bool,
             target: str, test: str) -> str:
    config = chosen.run.config
    what = f"{config.hardware.text}, {config.served.engine}"
    head = f"Deploy **{config.label}** ({what}) for {chosen.run.model} at {target} ({test})"
    if len(ranked) == 1:
        why = "the only configuration that holds every SLO there"
    elif priced:
        why = f"the cheapest of {len(ranked)} that hold every SLO there"
    else:
        why = (f"the fewest GPUs ({config.gpu_count}), then the most headroom, of "
               f"{len(ranked)} that hold every SLO there")
    hourly = prices.hourly(config) if priced else None
    cost = cost_per_million(hourly, chosen.throughput)
    money = ""
    if hourly is not None:
        money = f"; ${hourly:.2f}/h"
        if cost is not None:
            money += f", ${cost:.2f} per million output tokens at its highest held load"
    return f"{head}: {why}{money}."


def _bounds(held: Held) -> str:
    if held.first_failing is None:
        return f"held {held.text()}, nothing above it failed"
    return f"held {held.text()}, failed at {held.text(held.first_failing)}"


def _may_hold(candidates: Sequence[TestFigures], target: float) -> list[str]:
    """Configurations below the target whose search never failed above what they held."""
    return [f"{f.run.config.label} held {_held(f).text()} and failed no load above it: it may "
            f"hold {_held(f).text(target)} (search higher, or give it more budget)."
            for f in candidates
            if (_held(f).load or 0.0) < target and _held(f).upper > target]

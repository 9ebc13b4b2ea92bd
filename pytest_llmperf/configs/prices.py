"""Hourly prices of hardware, as ``--price 'NVIDIA RTX A6000=0.79/h'`` gives them, and what a
configuration costs an hour and per million output tokens."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pytest_llmperf.configs.configuration import Configuration

__all__ = ["PriceError", "Prices", "cost_per_million", "parse_price"]

_PRICE = re.compile(r"\$?\s*(?P<amount>[^/\s]+)\s*/\s*(?P<unit>[A-Za-z]+)")
_HOUR = ("h", "hr", "hour")
_FORMAT = "NAME=PRICE/h, e.g. 'NVIDIA RTX A6000=0.79/h'"


class PriceError(ValueError):
    """A --price value that cannot be read; the message names the value and what is wrong."""


def parse_price(text: str) -> tuple[str, float]:
    """``'NVIDIA RTX A6000=0.79/h'`` -> ``('NVIDIA RTX A6000', 0.79)`` (dollars an hour)."""
    name, equals, price = text.rpartition("=")
    if not equals:
        raise PriceError(f"{text!r}: no '=' ({_FORMAT})")
    name = name.strip()
    if not name:
        raise PriceError(f"{text!r}: no GPU model, CPU model or configuration label before "
                         f"'=' ({_FORMAT})")
    match = _PRICE.fullmatch(price.strip())
    if match is None:
        raise PriceError(f"{text!r}: the price {price.strip()!r} is not an amount an hour "
                         f"({_FORMAT})")
    if match["unit"].lower() not in _HOUR:
        raise PriceError(f"{text!r}: the price is per {match['unit']!r}; give it per hour "
                         f"('/h')")
    try:
        amount = float(match["amount"])
    except ValueError:
        raise PriceError(f"{text!r}: {match['amount']!r} is not a number ({_FORMAT})") from None
    if not math.isfinite(amount) or amount < 0:
        raise PriceError(f"{text!r}: the price must be a finite amount >= 0, not "
                         f"{match['amount']}")
    return name, amount


@dataclass(frozen=True)
class Prices:
    """Dollars an hour by name: a configuration's label (the whole configuration), a GPU model
    (each GPU of it), or, for a host without GPUs, its CPU model (the whole host)."""

    by_name: Mapping[str, float]

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Prices:
        return cls(dict(parse_price(text) for text in texts))

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def hourly(self, config: Configuration) -> float | None:
        """What ``config`` costs an hour; None when some of its hardware has no price."""
        if config.label in self.by_name:
            return self.by_name[config.label]
        gpus = config.hardware.gpu_models
        if gpus:
            prices = [self.by_name.get(model) for model in gpus]
            return None if any(p is None for p in prices) else sum(p or 0.0 for p in prices)
        return self.by_name.get(config.hardware.cpu_model)

    def unused(self, configs: Iterable[Configuration]) -> list[str]:
        """The names priced that no configuration has: most likely a misspelt GPU model."""
        known: set[str] = set()
        for config in configs:
            known.update((config.label, config.hardware.cpu_model, *config.hardware.gpu_models))
        return [name for name in self.by_name if name not in known]


def cost_per_million(hourly: float | None, output_tokens_per_s: float | None) -> float | None:
    """Dollars per million output tokens at ``output_tokens_per_s``: hourly / (tok/s x 3600)
    x 1e6."""
    if hourly is None or not output_tokens_per_s or output_tokens_per_s <= 0:
        return None
    return hourly / (output_tokens_per_s * 3600.0) * 1e6

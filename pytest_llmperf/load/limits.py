"""How long a request, its first token and a whole run may take."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "TimeLimits"]


@dataclass(frozen=True)
class TimeLimits:
    """How long a request may take to its last token (``request_s``) and to its first
    (``first_token_s``; None: no limit of its own), and a whole run, warm-up included
    (``window_s``; None: none).  A request over a limit is a failed ``timeout`` request."""

    request_s: float = 600.0
    first_token_s: float | None = None
    window_s: float | None = None


DEFAULT_LIMITS = TimeLimits()  # the options' defaults: 600 s a request, no other limit

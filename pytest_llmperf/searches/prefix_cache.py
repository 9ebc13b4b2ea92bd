"""Whether a server can show what its prefix cache saves (the prefix-cache test's precondition)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel

__all__ = ["cache_unavailable"]


def cache_unavailable(served: ServedModel, prefix_caching: bool) -> str | None:
    """Why this server cannot show a prefix-cache gain, or None when it can."""
    if served.endpoint is None:
        return f"{served.description} keeps no prefix cache"
    if served.endpoint.cache_field:
        return None  # switched on per request (llama.cpp cache_prompt)
    if served.server_pid is not None and not prefix_caching:
        return (f"{served.description} was launched with prefix caching off "
                "(--llmperf-prefix-caching yes turns it on)")
    return None

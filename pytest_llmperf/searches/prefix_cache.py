"""The prefix-cache comparison: the same documents asked twice, and what the second ask gains.

The first pass asks one question of every document, which the cache cannot have seen (fresh
documents, see :mod:`pytest_llmperf.prompts.shared_prefix`); the second pass asks each document a
new question, so every prompt but its last few tokens can come from the cache.  The gain is the
first pass's median TTFT over the second's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_llmperf.results.metrics import statistic

if TYPE_CHECKING:
    from pytest_llmperf.engines.base import ServedModel
    from pytest_llmperf.load.runner import PerfResult
    from pytest_llmperf.settings.resolve import Settings

__all__ = ["PrefixCacheResult", "cache_unavailable"]


@dataclass(frozen=True)
class PrefixCacheResult:
    cold: PerfResult  # first asks: nothing cached
    warm: PerfResult  # second asks of the same documents
    document_tokens: int

    @property
    def ttft_gain(self) -> float | None:
        """Median TTFT of the first asks / of the second asks; None without both."""
        cold = self.cold.metrics.distributions["ttft_ms"]
        warm = self.warm.metrics.distributions["ttft_ms"]
        if not cold or not warm:
            return None
        return statistic(cold, "median") / statistic(warm, "median")

    @property
    def warm_cached_share(self) -> float | None:
        """The cached share of the second asks' prompt tokens, where the server said."""
        return self.warm.metrics.scalars.get("cache_hit_rate")

    def summary(self) -> str:
        gain, share = self.ttft_gain, self.warm_cached_share
        cold = self.cold.metrics.value("ttft_ms", "median")
        warm = self.warm.metrics.value("ttft_ms", "median")
        if gain is None or cold is None or warm is None:
            return "no TTFT to compare (requests failed)"
        text = (f"TTFT {gain:.1f}x faster on the second ask: median {cold:.0f} ms with "
                f"nothing cached, {warm:.0f} ms with each {self.document_tokens}-token document "
                "cached")
        if share is not None:
            text += f"; the server served {share:.0%} of the second asks' prompt tokens from it"
        return text


def cache_unavailable(served: ServedModel, settings: Settings) -> str | None:
    """Why this server cannot show a prefix-cache gain, or None when it can."""
    if served.endpoint is None:
        return f"{served.description} keeps no prefix cache"
    if served.endpoint.cache_field:
        return None  # switched on per request (llama.cpp cache_prompt)
    if served.server_pid is not None and not settings.prefix_caching:
        return (f"{served.description} was launched with prefix caching off "
                "(--llmperf-prefix-caching yes turns it on)")
    return None

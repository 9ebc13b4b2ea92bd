"""The prefix-cache comparison: the same documents asked twice, and what the second ask gains.

The first pass asks one question of every document, which the cache cannot have seen (fresh
documents, see :mod:`pytest_llmperf.prompts.shared_prefix`); the second pass asks each document a
new question, so every prompt but its last few tokens can come from the cache.  The gain is the
first pass's median TTFT over the second's.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmperf.results.jsonfields import Fields, JSONObject, rounded
from pytest_llmperf.results.load_point import LoadPoint
from pytest_llmperf.results.window import WindowResult

__all__ = ["CacheGain", "PrefixCacheResult"]


@dataclass(frozen=True)
class CacheGain:
    """What the second ask gained, from both passes' figures."""

    document_tokens: int
    cold: LoadPoint  # first asks: nothing cached
    warm: LoadPoint  # second asks of the same documents

    @property
    def ttft_gain(self) -> float | None:
        """Median TTFT of the first asks / of the second asks; None without both."""
        if not self.cold.ttft_ms_median or not self.warm.ttft_ms_median:
            return None
        return self.cold.ttft_ms_median / self.warm.ttft_ms_median

    @property
    def warm_cached_share(self) -> float | None:
        """The cached share of the second asks' prompt tokens, where the server said."""
        return self.warm.cache_hit_rate

    @property
    def summary(self) -> str:
        gain, share = self.ttft_gain, self.warm_cached_share
        cold, warm = self.cold.ttft_ms_median, self.warm.ttft_ms_median
        if gain is None or cold is None or warm is None:
            return "no TTFT to compare (requests failed)"
        text = (f"TTFT {gain:.1f}x faster on the second ask: median {cold:.0f} ms with "
                f"nothing cached, {warm:.0f} ms with each {self.document_tokens}-token document "
                "cached")
        if share is not None:
            text += f"; the server served {share:.0%} of the second asks' prompt tokens from it"
        return text

    def to_json(self) -> JSONObject:
        """Both passes; ``ttft_gain``, ``warm_cached_share`` and ``summary`` are written for
        readers, derived again on reading."""
        return {"document_tokens": self.document_tokens, "cold": self.cold.to_json(),
                "warm": self.warm.to_json(), "ttft_gain": rounded(self.ttft_gain),
                "warm_cached_share": rounded(self.warm_cached_share),
                "summary": self.summary}

    @classmethod
    def from_json(cls, fields: Fields) -> CacheGain:
        return cls(fields.integer("document_tokens"), LoadPoint.from_json(fields.obj("cold")),
                   LoadPoint.from_json(fields.obj("warm")))


@dataclass(frozen=True)
class PrefixCacheResult:
    """Both passes' windows (``llmperf_slo.check(result.warm)`` holds the cached one to the
    SLOs) and the gain."""

    cold: WindowResult  # first asks: nothing cached
    warm: WindowResult  # second asks of the same documents
    document_tokens: int

    @property
    def gain(self) -> CacheGain:
        return CacheGain(self.document_tokens,
                         LoadPoint.of(self.cold, label="first ask (nothing cached)"),
                         LoadPoint.of(self.warm, label="second ask (document cached)"))

    @property
    def ttft_gain(self) -> float | None:
        return self.gain.ttft_gain

    @property
    def warm_cached_share(self) -> float | None:
        return self.gain.warm_cached_share

    def summary(self) -> str:
        return self.gain.summary

    def cache_problem(self, description: str) -> str | None:
        """Why the cache did not hold the documents (the server said it served under half of
        the second asks' prompts from it); None when it did, or when it does not say."""
        share = self.warm_cached_share
        if share is None or share >= 0.5:
            return None
        return (f"the prefix cache was asked for, but {description} served only {share:.0%} "
                "of the second asks' prompt tokens from it: the cache does not hold these "
                "documents")

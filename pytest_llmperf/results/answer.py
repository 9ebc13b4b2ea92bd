"""The answer a user reads, apart from a reasoning model's thinking, and the prefix cache.

The definitions are listed with every other metric's in :mod:`pytest_llmperf.results.metrics`;
these are their functions.  A stream with no reasoning is all answer, so for most models the
answer's times are the stream's own (TTFT, E2EL).
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_llmperf.results.records import RequestRecord

__all__ = ["answer_decode_speed", "answer_e2el_ms", "answer_span_ns", "cache_hit_rate",
           "time_to_answer_ms"]

_NS_PER_MS = 1e6


def answer_span_ns(record: RequestRecord) -> tuple[int, int] | None:
    """The first and last reads that carried answer text; None when none did."""
    if not record.has_reasoning:
        return record.chunk_ns[0], record.chunk_ns[-1]
    if record.answer_start_ns is None or record.answer_end_ns is None:
        return None
    return record.answer_start_ns, record.answer_end_ns


def time_to_answer_ms(record: RequestRecord) -> float | None:
    span = answer_span_ns(record)
    return None if span is None else (span[0] - record.send_ns) / _NS_PER_MS


def answer_e2el_ms(record: RequestRecord) -> float | None:
    span = answer_span_ns(record)
    return None if span is None else (span[1] - record.send_ns) / _NS_PER_MS


def answer_decode_speed(record: RequestRecord) -> float | None:
    span, tokens = answer_span_ns(record), record.answer_tokens
    if span is None or tokens is None or tokens < 2 or span[1] == span[0]:
        return None
    return (tokens - 1) / ((span[1] - span[0]) / 1e9)


def cache_hit_rate(records: Sequence[RequestRecord]) -> float | None:
    """Cached / all prompt tokens over the requests whose server said how many were cached."""
    told = [r for r in records if r.cached_tokens is not None and r.input_tokens]
    prompt = sum(r.input_tokens or 0 for r in told)
    return sum(r.cached_tokens or 0 for r in told) / prompt if prompt else None

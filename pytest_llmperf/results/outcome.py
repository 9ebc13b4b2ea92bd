"""What makes an answer a completed request: one rule for every client.

A client records what it saw (chunks, counts, the server's ``finish_reason``, a transport
error); :func:`judge` then decides, once the measured window has ended, whether that was a
complete answer.  An answer that is not becomes a failed request with the reason as its error:

- the server aborted it (``finish_reason`` ``abort``, ``error`` or ``cancelled``): ``aborted``,
  whatever else is missing (no token, no usage): the abort is the first cause;
- no token at all (an empty stream): ``empty``;
- the request forced its length (``ignore_eos``/``min_tokens``) and got fewer tokens, for
  example because the context ran out: ``aborted`` too (the server ended it early).
"""

from __future__ import annotations

import dataclasses

from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.records import RequestRecord

__all__ = ["FAILED_FINISH_REASONS", "judge", "server_gave_up"]

# finish_reason values that mean the server gave up on the answer (vLLM "abort", SGLang
# "abort", OpenAI-style "error"/"cancelled").
FAILED_FINISH_REASONS = frozenset({"abort", "error", "cancelled"})


def judge(record: RequestRecord, forced_tokens: int | None) -> RequestRecord:
    """``record``, failed with the reason when it is not a complete answer.

    ``forced_tokens`` is the length the request forced (its max_tokens), None when the engine
    was free to stop early (it cannot ignore EOS, or ``--llmperf-ignore-eos no``).
    """
    if record.error is not None:
        return record
    failure = _incomplete(record, forced_tokens)
    if failure is None:
        return record
    kind, error = failure
    return dataclasses.replace(record, error=error, error_kind=kind.value)


def server_gave_up(record: RequestRecord) -> tuple[ErrorKind, str] | None:
    """``aborted`` and why, when the server's own ``finish_reason`` says it gave up on the
    answer; None otherwise.  Token counting asks this first: an aborted answer without usage
    is aborted, not uncountable."""
    reason = record.finish_reason
    if isinstance(reason, str) and reason.lower() in FAILED_FINISH_REASONS:
        return ErrorKind.ABORTED, f"the server aborted the answer (finish_reason {reason!r})"
    return None


def _incomplete(record: RequestRecord, forced_tokens: int | None
                ) -> tuple[ErrorKind, str] | None:
    reason = record.finish_reason
    gave_up = server_gave_up(record)
    if gave_up is not None:
        return gave_up
    if record.embedded_inputs:  # an embeddings answer: its vectors came (clients.embeddings)
        return None
    if not record.chunk_ns:
        return ErrorKind.EMPTY, f"the answer carried no token (finish_reason {reason!r})"
    if record.output_tokens < 1:
        return ErrorKind.EMPTY, "no output token was counted"
    if forced_tokens is not None and record.output_tokens < forced_tokens:
        return ErrorKind.ABORTED, (
            f"{record.output_tokens} output tokens of the {forced_tokens} the request "
            f"forced (finish_reason {reason!r}): the server stopped it early")
    return None

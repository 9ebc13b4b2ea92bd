"""What went wrong with a failed request: one category each, counted per window.

Every failed request's record carries one :class:`ErrorKind` beside its message.  The client
that saw the failure names it (an HTTP status, a reset, a chunk it could not read); the rule
for complete answers (:mod:`pytest_llmperf.results.outcome`) names the ones it fails; the
window's deadline names the requests it cut.  Each kind is counted per window as the whole-run
metric ``errors.<kind>``, so an SLO can name one (``errors.rate_limited <= 0``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from pytest_llmperf.results.records import RequestRecord

__all__ = ["DESCRIPTIONS", "ERROR_KINDS", "ErrorKind", "error_counts", "error_examples",
           "error_summary", "http_kind",
           "kind_of", "metric_name"]


class ErrorKind(enum.StrEnum):
    """Why a request failed.  The values are the names in metrics, junit and stored files."""

    HTTP_4XX = "http_4xx"  # the server refused the request (status 400-499 but 429)
    REDIRECTED = "redirected"  # HTTP 3xx: the server points elsewhere; no redirect is followed
    RATE_LIMITED = "rate_limited"  # HTTP 429: the server is shedding load
    HTTP_5XX = "http_5xx"  # the server failed the request (status 500-599)
    TIMEOUT = "timeout"  # no first token / no complete answer in time, or cut at the deadline
    CONNECTION = "connection"  # refused, reset or closed before the answer began
    TRUNCATED = "truncated"  # the stream ended before the server finished the answer
    MALFORMED = "malformed"  # a chunk that is not the protocol's JSON; no way to count tokens
    IN_BAND = "in_band"  # the server sent an error inside the stream (or the engine raised)
    ABORTED = "aborted"  # the server ended the answer early (finish_reason abort, or short)
    EMPTY = "empty"  # a finished stream that carried no token
    SERVER_DIED = "server_died"  # the launched server process exited during the window
    # The client's own machine ran out (file descriptors, local ports): not the server's doing.
    CLIENT_LIMIT = "client_limit"
    # Structured output: the answer is not JSON that the request's schema accepts.
    INVALID_OUTPUT = "invalid_output"


ERROR_KINDS: tuple[str, ...] = tuple(kind.value for kind in ErrorKind)
DESCRIPTIONS: Mapping[str, str] = {
    "http_4xx": "HTTP 4xx responses other than 429",
    "redirected": "HTTP 3xx responses (redirects are not followed)",
    "rate_limited": "HTTP 429 responses (rate limited)",
    "http_5xx": "HTTP 5xx responses",
    "timeout": "requests timed out or cut at the window's deadline",
    "connection": "connections refused, reset or closed before an answer",
    "truncated": "streams that ended before the answer was finished",
    "malformed": "streams the client could not read, or whose tokens nothing could count",
    "in_band": "errors the server sent inside the stream",
    "aborted": "answers the server ended early",
    "empty": "finished streams that carried no token",
    "server_died": "requests lost because the launched server died",
    "client_limit": "requests the client could not send: its own machine ran out of file "
                    "descriptors or local ports",
    "invalid_output": "structured answers that are not JSON the request's schema accepts",
}


def metric_name(kind: str) -> str:
    """``errors.rate_limited``: the whole-run metric that counts ``kind``."""
    return f"errors.{kind}"


def http_kind(status: int) -> ErrorKind:
    """The category of a non-200 HTTP answer: a refusal, a failure, a redirect; any other
    status (204, 206, 600) is not the streamed answer asked for."""
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if 300 <= status < 400:
        return ErrorKind.REDIRECTED
    if 400 <= status < 500:
        return ErrorKind.HTTP_4XX
    return ErrorKind.HTTP_5XX if 500 <= status < 600 else ErrorKind.MALFORMED


def kind_of(record: RequestRecord) -> str | None:
    """The category of a failed record; None when it did not fail.  A failure its client did
    not name (an older stored file) is read from its message."""
    if record.error is None:
        return None
    return record.error_kind or _from_message(record.error)


# Message openings of clients that did not name a kind (older stored files); first match wins.
_MESSAGES: tuple[tuple[str, ErrorKind], ...] = (
    ("HTTP 429", ErrorKind.RATE_LIMITED),
    ("HTTP 5", ErrorKind.HTTP_5XX),
    ("HTTP 4", ErrorKind.HTTP_4XX),
    ("HTTP 3", ErrorKind.REDIRECTED),
    ("no complete answer within", ErrorKind.TIMEOUT),
    ("no first token within", ErrorKind.TIMEOUT),
    ("server error in stream", ErrorKind.IN_BAND),
    ("malformed", ErrorKind.MALFORMED),
    ("unexpected stream", ErrorKind.MALFORMED),
    ("stream ended", ErrorKind.TRUNCATED),
    ("the answer carried no token", ErrorKind.EMPTY),
    ("the engine generated no token", ErrorKind.EMPTY),
    ("the server ended the answer", ErrorKind.ABORTED),
    ("the server aborted the answer", ErrorKind.ABORTED),
    ("the server reported no token usage", ErrorKind.MALFORMED),
    ("counting tokens", ErrorKind.MALFORMED),
    ("cut at the window's deadline", ErrorKind.TIMEOUT),
)


def _from_message(error: str) -> str:
    for opening, kind in _MESSAGES:
        if error.startswith(opening):
            return kind.value
    if "forced" in error and "stopped it early" in error:
        return ErrorKind.ABORTED.value
    return ErrorKind.CONNECTION.value  # what is left is the transport's errors


def error_counts(records: Iterable[RequestRecord]) -> dict[str, int]:
    """Failed requests per category, every category present (0 when none)."""
    counts = dict.fromkeys(ERROR_KINDS, 0)
    for record in records:
        kind = kind_of(record)
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def error_examples(records: Iterable[RequestRecord]) -> dict[str, str]:
    """The first message of each category that occurred, in the order of ERROR_KINDS."""
    first: dict[str, str] = {}
    for record in records:
        kind = kind_of(record)
        if kind is not None and kind not in first:
            first[kind] = record.error or ""
    return {kind: first[kind] for kind in ERROR_KINDS if kind in first}


def error_summary(records: Iterable[RequestRecord]) -> str | None:
    """``3 of 20 requests failed: timeout 2 (e.g. "no first token within 30 s"), http_5xx 1
    (e.g. "HTTP 503: busy")``; None when none failed."""
    records = list(records)
    counts = error_counts(records)
    failed = sum(counts.values())
    if not failed:
        return None
    examples = error_examples(records)
    parts = [f'{kind} {counts[kind]} (e.g. "{_short(example)}")'
             for kind, example in examples.items()]
    return f"{failed} of {len(records)} requests failed: {', '.join(parts)}"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."

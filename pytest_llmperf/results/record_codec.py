"""Request records as JSON: how a window's raw requests travel (to the pytest-xdist controller)
and are kept (the result store).

Times are integer microseconds: ``send_us`` (and, open loop, ``scheduled_us``) from the start
of the window, ``chunk_us``, ``end_us`` and a reasoning answer's ``answer_start_us`` /
``answer_end_us`` from the request's own send.  Fields with nothing to say are left out, so a
plain window stays small.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_llmperf.results.errors import kind_of
from pytest_llmperf.results.jsonfields import Fields, JSONDecodeError, JSONObject
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource

__all__ = ["decode_records", "encode_records", "run_from_json", "run_to_json"]

_NS_PER_US = 1_000


def encode_records(run: LoadRun) -> list[JSONObject]:
    """The window's raw requests, JSON-ready, in integer microseconds: ``send_us`` (and, open
    loop, ``scheduled_us``) from the start of the window, ``chunk_us`` and ``end_us`` from the
    request's own send."""
    return [_encode(record, run.window_start_ns) for record in run.records]


def _encode(record: RequestRecord, start_ns: int) -> JSONObject:
    send = record.send_ns
    return {
        "id": record.request_id,
        "send_us": (send - start_ns) // _NS_PER_US,
        "chunk_us": [(t - send) // _NS_PER_US for t in record.chunk_ns],
        "end_us": (record.end_ns - send) // _NS_PER_US,
        "output_tokens": record.output_tokens,
        "output_token_source": _value(record.output_token_source),
        "input_tokens": record.input_tokens,
        "input_token_source": _value(record.input_token_source),
        "finish_reason": record.finish_reason,
        "error": record.error,
        **({} if record.error is None else {"error_kind": kind_of(record)}),
        "resent": record.resent,
        # Open loop: when it was due, from the start of the window (absent: a closed loop).
        **({} if record.scheduled_ns is None
           else {"scheduled_us": (record.scheduled_ns - start_ns) // _NS_PER_US}),
        # Written only where there is something to say, so a plain run stays small.
        **_optional(record, send),
    }


def _optional(record: RequestRecord, send: int) -> JSONObject:
    """The answer length asked for, cached and exact-input counts, and a reasoning answer's
    split (answer times from the send, like chunk_us)."""
    extra: JSONObject = {key: value for key, value in (
        ("max_tokens", record.max_tokens), ("cached_tokens", record.cached_tokens),
        ("dataset_input_tokens", record.dataset_input_tokens)) if value is not None}
    if record.schema_checked:
        extra["schema_checked"] = True
    if record.replica is not None:
        extra["replica"] = record.replica
    if record.embedded_inputs:
        extra["embedded_inputs"] = record.embedded_inputs
    if record.image_size is not None:
        extra["image_size"] = record.image_size
    if record.queued_ns:
        extra["queued_us"] = record.queued_ns // _NS_PER_US
    if record.has_reasoning:
        extra["reasoning_chunks"] = record.reasoning_chunks
        extra["reasoning_tokens"] = record.reasoning_tokens
        extra["reasoning_token_source"] = _value(record.reasoning_token_source)
        for key, at in (("answer_start_us", record.answer_start_ns),
                        ("answer_end_us", record.answer_end_ns)):
            extra[key] = None if at is None else (at - send) // _NS_PER_US
    return extra


def _value(source: TokenSource | None) -> str | None:
    return None if source is None else str(source.value)


def run_to_json(run: LoadRun) -> JSONObject:
    """The measured window: its length, its load's concurrency and warm-up, and every request
    (:func:`encode_records`)."""
    return {"duration_ns": run.window_end_ns - run.window_start_ns,
            "concurrency": run.concurrency, "warmup_requests": run.warmup_requests,
            "stopped_early": run.stopped_early, "records": encode_records(run)}


def run_from_json(fields: Fields) -> LoadRun:
    """What :func:`run_to_json` wrote, as a :class:`LoadRun` again (times in whole microseconds,
    so the metrics of a stored window are those of the window to within a microsecond), its
    requests in send order.  A field that is not what it should be raises JSONDecodeError."""
    return LoadRun(decode_records(fields), 0, fields.integer("duration_ns"),
                   fields.integer("concurrency"), fields.integer("warmup_requests"),
                   fields.text_or_none("stopped_early"))


def decode_records(fields: Fields) -> tuple[RequestRecord, ...]:
    """The ``records`` of a stored window, in send order."""
    decoded = []
    for path, raw in fields.items("records", required=True):  # no requests: no window
        try:
            if not isinstance(raw, dict):
                raise TypeError(f"expected an object, got {type(raw).__name__}")
            decoded.append(_decode(raw))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise JSONDecodeError(f"{path}: not a stored request ({type(exc).__name__}: "
                                  f"{exc})") from None
    return tuple(sorted(decoded, key=lambda record: record.send_ns))


# Any: the raw JSON of one request, read field by field; a wrong type raises (see
# decode_records), and a Fields object per request would cost more than the decoding itself.
def _decode(raw: Mapping[str, Any]) -> RequestRecord:
    send = int(raw["send_us"]) * _NS_PER_US
    return RequestRecord(
        request_id=int(raw["id"]),
        send_ns=send,
        chunk_ns=tuple(send + int(t) * _NS_PER_US for t in raw["chunk_us"]),
        end_ns=send + int(raw["end_us"]) * _NS_PER_US,
        output_tokens=int(raw["output_tokens"]),
        output_token_source=_source(raw.get("output_token_source")),
        input_tokens=None if raw.get("input_tokens") is None else int(raw["input_tokens"]),
        input_token_source=_source(raw.get("input_token_source")),
        finish_reason=raw.get("finish_reason"),
        error=raw.get("error"),
        error_kind=raw.get("error_kind"),  # absent in older files: read from the message
        resent=bool(raw.get("resent", False)),
        scheduled_ns=None if raw.get("scheduled_us") is None
        else int(raw["scheduled_us"]) * _NS_PER_US,
        max_tokens=_int(raw.get("max_tokens")),
        queued_ns=(_int(raw.get("queued_us")) or 0) * _NS_PER_US,
        cached_tokens=_int(raw.get("cached_tokens")),
        dataset_input_tokens=_int(raw.get("dataset_input_tokens")),
        reasoning_chunks=int(raw.get("reasoning_chunks", 0)),
        reasoning_tokens=_int(raw["reasoning_tokens"]) if "reasoning_tokens" in raw else 0,
        reasoning_token_source=_source(raw.get("reasoning_token_source")),
        answer_start_ns=_at(send, raw.get("answer_start_us")),
        answer_end_ns=_at(send, raw.get("answer_end_us")),
        schema_checked=bool(raw.get("schema_checked", False)),
        replica=raw.get("replica"),
        embedded_inputs=int(raw.get("embedded_inputs", 0)),
        image_size=raw.get("image_size"),
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _at(send_ns: int, us: Any) -> int | None:
    return None if us is None else send_ns + int(us) * _NS_PER_US


def _source(value: Any) -> TokenSource | None:
    return None if value is None else TokenSource(value)

"""SSEParser: events however the network splits or merges the bytes."""

from __future__ import annotations

import json

import pytest

from pytest_llmperf.clients.sse import LineTooLong, SSEEvent, SSEParser


def parse(*chunks: bytes) -> list[SSEEvent]:
    """Every event of a stream fed in ``chunks``, including what close() returns."""
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


def test_one_event() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"x": 1}\n\n') == [SSEEvent('{"x": 1}')]
    assert parser.close() == []


def test_several_events_in_one_feed() -> None:
    parser = SSEParser()
    events = parser.feed(b"data: a\n\ndata: b\n\ndata: c\n\n")
    assert events == [SSEEvent("a"), SSEEvent("b"), SSEEvent("c")]


def test_event_is_returned_only_once_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\n") == [SSEEvent("a")]


# An OpenAI-style chat stream with Chinese text, a comment, an `event:` field, a usage-only
# final chunk and [DONE]: line endings mixed on purpose.
STREAM_TEXT = (
    ": ping\r\n"
    "\r\n"
    'data: {"choices":[{"delta":{"role":"assistant"}}]}\r\n'
    "\r\n"
    'data: {"choices":[{"delta":{"content":"秋天的落叶"}}]}\n'
    "\n"
    "event: note\n"
    "data: 第一行\n"
    "data: second line\n"
    "\n"
    'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34}}\r'
    "\r"
    "data: [DONE]\n"
    "\n"
)
STREAM = STREAM_TEXT.encode("utf-8")
EXPECTED = [
    SSEEvent('{"choices":[{"delta":{"role":"assistant"}}]}'),
    SSEEvent('{"choices":[{"delta":{"content":"秋天的落叶"}}]}'),
    SSEEvent("第一行\nsecond line", event="note"),
    SSEEvent('{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34}}'),
    SSEEvent("[DONE]"),
]


def test_whole_stream_in_one_feed() -> None:
    assert parse(STREAM) == EXPECTED


def test_stream_split_at_every_offset() -> None:
    for split in range(len(STREAM) + 1):
        assert parse(STREAM[:split], STREAM[split:]) == EXPECTED, f"split at byte {split}"


def test_stream_split_into_three_at_every_pair_of_offsets() -> None:
    for first in range(0, len(STREAM) + 1, 5):
        for second in range(first, len(STREAM) + 1):
            chunks = STREAM[:first], STREAM[first:second], STREAM[second:]
            assert parse(*chunks) == EXPECTED, f"split at bytes {first} and {second}"


def test_stream_fed_byte_by_byte() -> None:
    assert parse(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == EXPECTED


def test_split_inside_a_multibyte_character() -> None:
    data = "data: 秋天\n\n".encode()
    inside = data.index("秋".encode()) + 1  # between the first and second byte of 秋
    parser = SSEParser()
    assert parser.feed(data[:inside]) == []
    assert parser.feed(data[inside : inside + 1]) == []  # still inside 秋 (3 bytes)
    assert parser.feed(data[inside + 1 :]) == [SSEEvent("秋天")]


def test_split_between_cr_and_lf() -> None:
    """CR LF is one line end: reading it as two would end the event after its first line."""
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r") == []
    assert parser.feed(b"\n") == [SSEEvent("a\nb")]
    assert parser.close() == []


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_endings(newline: bytes) -> None:
    body = newline.join([b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert parse(body) == [SSEEvent("a\nb"), SSEEvent("c")]


def test_lone_cr_line_endings_between_events() -> None:
    parser = SSEParser()
    # A trailing CR may be half of CR LF, so the second event waits for the next byte...
    assert parser.feed(b"data: a\r\rdata: b\r\r") == [SSEEvent("a")]
    # ...and comes out as soon as that byte is not LF.
    assert parser.feed(b"data: c\r\r") == [SSEEvent("b")]
    assert parser.close() == [SSEEvent("c")]


@pytest.mark.parametrize(
    "tail", [b"data: [DONE]\r", b"data: [DONE]\r\n", b"data: [DONE]\n", b"data: [DONE]"]
)
def test_close_returns_a_final_event_without_blank_line(tail: bytes) -> None:
    parser = SSEParser()
    assert parser.feed(b"data: first\n\n" + tail) == [SSEEvent("first")]
    assert parser.close() == [SSEEvent("[DONE]")]
    assert parser.close() == []


def test_close_after_a_complete_stream_returns_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\n\n") == [SSEEvent("x")]
    assert parser.close() == []


def test_comments_and_keep_alives_produce_nothing() -> None:
    assert parse(b": ping\n\n") == []
    assert parse(b":\n\n\n\n\r\n\r\r") == []
    assert parse(b": ping\n\n: ping\n\n") == []
    # a comment inside an event neither ends nor changes it
    assert parse(b"data: a\n: keep-alive\ndata: b\n\n") == [SSEEvent("a\nb")]


def test_multi_line_data_joined_with_newline() -> None:
    assert parse(b"data: one\ndata: two\ndata: three\n\n") == [SSEEvent("one\ntwo\nthree")]
    # an empty data line contributes an empty line
    assert parse(b"data: one\ndata:\ndata: three\n\n") == [SSEEvent("one\n\nthree")]


def test_data_with_and_without_the_space() -> None:
    assert parse(b"data:x\n\n") == [SSEEvent("x")]
    assert parse(b"data: x\n\n") == [SSEEvent("x")]
    # only one space is taken off; the rest is data
    assert parse(b"data:  x \n\n") == [SSEEvent(" x ")]
    # a value may itself contain colons
    assert parse(b"data: a: b\n\n") == [SSEEvent("a: b")]


def test_event_field() -> None:
    events = parse(b"event: usage\ndata: {}\n\ndata: plain\n\n")
    # the event type applies to its own event only
    assert events == [SSEEvent("{}", event="usage"), SSEEvent("plain", event="message")]


def test_event_field_without_data_dispatches_nothing_and_does_not_leak() -> None:
    assert parse(b"event: lonely\n\ndata: x\n\n") == [SSEEvent("x")]


def test_unknown_fields_are_ignored() -> None:
    assert parse(b"id: 7\nretry: 1000\nfoo: bar\ndata: x\n\n") == [SSEEvent("x")]


def test_done_comes_through_as_data() -> None:
    assert parse(b"data: [DONE]\n\n") == [SSEEvent("[DONE]", event="message")]


def test_usage_only_final_chunk() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}
    chunk = {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
    events = parse(b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n")
    assert len(events) == 2
    message = json.loads(events[0].data)
    assert message["choices"] == []
    assert message["usage"] == usage
    assert events[1].data == "[DONE]"


def test_a_read_of_whole_events_hands_what_is_not_one_to_the_general_rule() -> None:
    # Single-line data events, then a comment, a named event and a multi-line one, then a
    # single-line event again, and a line still coming: all in one read.
    parser = SSEParser()
    events = parser.feed(b"data: a\n\ndata: b\n\n: ping\n\nevent: x\ndata: c\n\n"
                         b"data: d\ndata: e\n\ndata: f\n\ndata: g")
    assert events == [SSEEvent("a"), SSEEvent("b"), SSEEvent("c", "x"), SSEEvent("d\ne"),
                      SSEEvent("f")]
    assert parser.feed(b"\n\n") == [SSEEvent("g")]


def test_a_read_of_whole_events_stops_at_the_last_one() -> None:
    parser = SSEParser(last="[DONE]")
    events = parser.feed(b"data: a\n\ndata: [DONE]\n\ndata: \xff\n\n")  # not even decoded
    assert events == [SSEEvent("a"), SSEEvent("[DONE]")]
    assert parser.ended and parser.feed(b"data: b\n\n") == []


def test_a_read_of_whole_events_holds_no_line_longer_than_the_limit() -> None:
    with pytest.raises(LineTooLong):
        SSEParser(max_line=16).feed(b"data: " + b"x" * 20 + b"\n\n")

"""Micro-benchmarks of the client's hot paths (pytest-benchmark); they print figures and
assert only that the work was done, never a time.

    pytest benchmarks/test_hot_paths.py -p no:cacheprovider

- SSE parsing: an OpenAI-style stream of 1000 token events, fed as the network splits it
  (one event per read, as llama.cpp and vLLM write them): events per second in ``extra_info``.
- HTTP framing: the same 1000 events as chunked-encoding reads through the client's HTTP/1.1
  connection (clients/transport.py: httptools, a stamp per read): reads per second.
- Per-chunk bookkeeping: what the client does with each read after parsing (JSON, reasoning
  split, the timestamp), for the same 1000 reads.
- Aggregation: every metric of a window of 100 000 requests (``results.metrics.summarize``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pytest_llmperf.clients.openai_stream import OpenAIStream
from pytest_llmperf.clients.sse import SSEParser
from pytest_llmperf.clients.transport import Connection
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource

EVENTS = 1000
MS = 1_000_000


def _chunk(text: str) -> bytes:
    payload = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
               "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


READS = [_chunk(f" tok{i}") for i in range(EVENTS)]


def test_sse_parsing(benchmark: Any) -> None:
    def parse() -> int:
        parser = SSEParser()
        return sum(len(parser.feed(read)) for read in READS)

    parsed = benchmark(parse)
    assert parsed == EVENTS
    benchmark.extra_info["events_per_s"] = round(EVENTS / benchmark.stats.stats.mean)


class _Sink:
    """The transport side a connection writes requests to: they go nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_http_framing(benchmark: Any) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire = [b"%x\r\n%s\r\n" % (len(read), read) for read in READS] + [b"0\r\n\r\n"]
    loop = asyncio.new_event_loop()

    async def frame() -> int:
        got: list[int] = []
        connection = Connection()
        connection.connection_made(_Sink())  # type: ignore[arg-type]
        sending = loop.create_task(connection.send(b"", b""))
        await asyncio.sleep(0)
        connection.data_received(head)
        await sending
        streaming = loop.create_task(connection.stream(lambda raw, now_ns: got.append(now_ns)))
        await asyncio.sleep(0)
        for read in wire:
            connection.data_received(read)
        await streaming
        return len(got)

    try:
        assert benchmark(lambda: loop.run_until_complete(frame())) == EVENTS
    finally:
        loop.close()
    benchmark.extra_info["reads_per_s"] = round(EVENTS / benchmark.stats.stats.mean)


def test_per_chunk_bookkeeping(benchmark: Any) -> None:
    events = [SSEParser().feed(read) for read in READS]

    def book() -> int:
        stream = OpenAIStream()
        for number, read in enumerate(events):
            stream.read(read, number)
        return len(stream.chunk_ns)

    assert benchmark(book) == EVENTS
    benchmark.extra_info["reads_per_s"] = round(EVENTS / benchmark.stats.stats.mean)


def test_aggregation_of_100k_records(benchmark: Any) -> None:
    records = []
    for i in range(100_000):
        send = i * 10 * MS
        chunks = tuple(send + 100 * MS + k * 10 * MS for k in range(16))
        records.append(RequestRecord(i, send, chunks, chunks[-1], 16, TokenSource.USAGE, 32,
                                     TokenSource.USAGE, "length"))
    run = LoadRun(tuple(records), 0, records[-1].end_ns, 64, 0)

    metrics = benchmark.pedantic(summarize, args=(run,), rounds=3, iterations=1)
    assert metrics.value("completed") == 100_000
    benchmark.extra_info["records_per_s"] = round(100_000 / benchmark.stats.stats.mean)

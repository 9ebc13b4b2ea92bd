"""A fast measuring instrument: an OpenAI-compatible streaming server that stamps its own sends.

    python fast_stub.py PORT [--first-ms MS] [--token-ms MS] [--uvloop]

Every chat or text completion streams exactly ``max_completion_tokens`` (else ``max_tokens``)
tokens (default 16): the first
``--first-ms`` after the request's last byte was read, each next one ``--token-ms`` after the
one before it was due (absolute due times: lateness does not add up), then a finish chunk, a
usage chunk, ``[DONE]``.  The usage chunk carries ``timings``: ``stub_received_ns`` (the
request read), ``stub_first_sent_ns`` and ``stub_last_sent_ns`` (just before the first and
the last token were written), ``time.perf_counter_ns()`` readings.  On Linux that is the
machine's monotonic clock, the one our client's records use, so a benchmark can tell the
client's error from the stub's own lateness request by request.  ``GET /stamps`` lists
``[R, F, L, tokens]`` of every finished request (for a client whose records cannot be read),
``POST /stamps/reset`` empties it.

It is fast because it does little: a raw asyncio protocol (no web framework), pre-encoded token
chunks, one timer callback and one write per token, keep-alive connections, and uvloop with
``--uvloop``.  It stands in for no engine: it gives ground truth a real server cannot.
Ready once ``GET /v1/models`` answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from functools import lru_cache

_MODELS = json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode()
_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n")
_MAX_HEAD = 64 * 1024
stamps: list[list[int]] = []


def _chunk(payload: bytes) -> bytes:
    """One SSE event as one HTTP chunk."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _message(chat: bool, choice: dict[str, object]) -> bytes:
    """A chunk with the fields vLLM's server sends (its id, object, created and model), so a
    client parses as many bytes a token as it would from vLLM: about 200."""
    return _chunk(json.dumps({
        "id": "chatcmpl-4f1c7a9e2b3d4c5e8f6a7b8c9d0e1f2a",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": 1796600000, "model": "stub", "choices": [choice]},
        separators=(",", ":")).encode())


@lru_cache(maxsize=8192)
def _token(index: int, chat: bool) -> bytes:
    choice: dict[str, object] = {"index": 0}
    if chat:
        choice["delta"] = {"content": f" t{index}"}
    else:
        choice["text"] = f" t{index}"
    return _message(chat, {**choice, "logprobs": None, "finish_reason": None})


def _finish(chat: bool) -> bytes:
    choice: dict[str, object] = {"index": 0}
    if chat:
        choice["delta"] = {}
    else:
        choice["text"] = ""
    return _message(chat, {**choice, "logprobs": None, "finish_reason": "length"})


def _plain(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class _Stream:
    """One answer being written: its timers and stamps."""

    def __init__(self, connection: _Connection, tokens: int, chat: bool, received_ns: int,
                 first_s: float, token_s: float, close: bool) -> None:
        self.connection, self.tokens, self.chat, self.close = connection, tokens, chat, close
        self.received_ns, self.first_ns = received_ns, 0
        self.index = 0
        self.token_ns = round(token_s * 1e9)
        self.due_ns = received_ns + round(first_s * 1e9)  # on the stamps' clock
        self.timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        # The loop's timers may round (uvloop's to the millisecond) and fire a little early:
        # a token is never written before it is due on the stamps' clock.
        self.timer = asyncio.get_running_loop().call_later(
            max(0.0, (self.due_ns - time.perf_counter_ns()) / 1e9), self.send)

    def send(self) -> None:
        transport = self.connection.transport
        if transport is None or transport.is_closing():
            self.timer = None
            return
        if time.perf_counter_ns() < self.due_ns:
            self._arm()
            return
        # Stamped just before the write: the client may read a token before a stamp taken
        # after it returned.
        sent_ns = time.perf_counter_ns()
        transport.write(_token(self.index, self.chat))
        if self.index == 0:
            self.first_ns = sent_ns
        self.index += 1
        if self.index < self.tokens:
            self.due_ns += self.token_ns
            self._arm()
            return
        last_ns = sent_ns
        self.timer = None
        usage = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": self.tokens,
                                          "total_tokens": 12 + self.tokens},
                 "timings": {"stub_received_ns": self.received_ns,
                             "stub_first_sent_ns": self.first_ns,
                             "stub_last_sent_ns": last_ns}}
        transport.write(_finish(self.chat) + _chunk(json.dumps(usage).encode())
                        + _chunk(b"[DONE]") + b"0\r\n\r\n")
        stamps.append([self.received_ns, self.first_ns, last_ns, self.tokens])
        self.connection.stream_done(self.close)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: reads requests one after another, answers each."""

    def __init__(self, first_s: float, token_s: float) -> None:
        self.first_s, self.token_s = first_s, token_s
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.stream: _Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None and self.stream.timer is not None:
            self.stream.timer.cancel()
        self.stream, self.transport = None, None

    def data_received(self, data: bytes) -> None:
        received_ns = time.perf_counter_ns()
        self.buffer += data
        while self.stream is None and self.transport is not None:
            request = self._take_request()
            if request is None:
                return
            self._answer(*request, received_ns)

    def _take_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _MAX_HEAD:
                self._fail("431 Request Header Fields Too Large")
            return None
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        try:
            method, path, _ = lines[0].split(" ", 2)
        except ValueError:
            self._fail("400 Bad Request")
            return None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if len(self.buffer) < end + 4 + length:
            return None  # the body is still coming
        body = self.buffer[end + 4:end + 4 + length]
        self.buffer = self.buffer[end + 4 + length:]
        return method, path, headers, body

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes,
                received_ns: int) -> None:
        assert self.transport is not None
        close = headers.get("connection", "").lower() == "close"
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            try:
                asked = json.loads(body or b"{}")
                # OpenAI's newer name first (vLLM's benchmark client sends it), then the older.
                tokens = int(asked.get("max_completion_tokens") or asked.get("max_tokens") or 16)
            except (ValueError, AttributeError):
                self._reply(_plain("400 Bad Request", b'{"error": "bad JSON body"}'), close)
                return
            self.transport.write(_STREAM_HEAD + (b"Connection: close\r\n\r\n" if close
                                                 else b"\r\n"))
            self.stream = _Stream(self, max(tokens, 1), path.endswith("chat/completions"),
                                  received_ns, self.first_s, self.token_s, close)
        elif method == "GET" and path == "/v1/models":
            self._reply(_plain("200 OK", _MODELS), close)
        elif method == "GET" and path == "/stamps":
            self._reply(_plain("200 OK", json.dumps(stamps).encode()), close)
        elif method in ("POST", "DELETE") and path in ("/stamps/reset", "/stamps"):
            stamps.clear()
            self._reply(_plain("200 OK", b"{}"), close)
        else:
            self._reply(_plain("404 Not Found", b'{"error": "no such path"}'), close)

    def _reply(self, response: bytes, close: bool) -> None:
        assert self.transport is not None
        self.transport.write(response)
        if close:
            self.transport.close()

    def _fail(self, status: str) -> None:
        self._reply(_plain(status, b""), close=True)

    def stream_done(self, close: bool) -> None:
        self.stream = None
        if close and self.transport is not None:
            self.transport.close()
        elif self.buffer:  # a request that came while answering (pipelined)
            self.data_received(b"")


async def serve(port: int, first_ms: float, token_ms: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(first_ms / 1000, token_ms / 1000),
                                      "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--first-ms", type=float, default=100.0)
    parser.add_argument("--token-ms", type=float, default=10.0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    coroutine = serve(args.port, args.first_ms, args.token_ms)
    try:
        if args.uvloop:
            try:
                import uvloop
            except ImportError:
                sys.exit("--uvloop: uvloop is not installed (pip install uvloop)")
            uvloop.run(coroutine)
        else:
            asyncio.run(coroutine)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

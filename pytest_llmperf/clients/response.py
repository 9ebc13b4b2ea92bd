"""One HTTP/1.1 response as it arrives, on httptools' callbacks, and the ways it can fail.

:class:`Response` takes the reads of one connection for one request: it passes over 1xx answers
(103 Early Hints, 100 Continue), resolves ``head`` with the status of the answer, hands the
body to a reader read by read (inflated in bounded pieces where it came compressed, see
:mod:`~pytest_llmperf.clients.inflate`), and resolves ``done`` when it ends.  The body of one
read goes to the reader in one call, however many HTTP chunks it held: a loaded server's
tokens come many to a read, and a call per chunk cost the client CPU for each token
(benchmarks/client_cost.py).  Bytes after the answer are nobody's (``trailing``); no more than
:data:`HEAD_LIMIT` bytes in a row may come without a byte of body (the head with any 1xx
answers before it, trailers, framing), so a server that never ends its head costs the client
that much memory, no more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httptools

from pytest_llmperf.clients.inflate import InflateError, Inflater

__all__ = ["HEAD_LIMIT", "BadResponse", "ClientLimit", "ConnectError", "MalformedAnswer",
           "PayloadError", "Reader", "Response", "ServerDisconnected", "TransportError"]

Reader = Callable[[bytes, int], None]  # a read of the body, and when it arrived (ns)
# Bytes in a row that carry no body: the head and 1xx answers before it, trailers, framing.
HEAD_LIMIT = 64 * 1024


class TransportError(Exception):
    """The exchange failed below HTTP: no answer, or a broken one."""


class ConnectError(TransportError):
    """No connection could be opened."""


class ClientLimit(ConnectError):
    """No connection could be opened because the client's own machine ran out (file
    descriptors, local ports): not the server's doing."""


class ServerDisconnected(TransportError):
    """The connection closed (or could not be written) before a byte of the answer came."""


class PayloadError(TransportError):
    """The connection closed, or the framing broke, inside the answer."""


class BadResponse(TransportError):
    """What came back is not an HTTP response the parser can read."""


class MalformedAnswer(TransportError):
    """An HTTP answer whose body cannot be read: compressed data that does not decode or
    inflates like a bomb, or framing without end."""


class _AfterAnswer(Exception):
    """Bytes came after the answer had ended."""


class Response:
    """One response as it arrives: httptools' callbacks land here."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.head: asyncio.Future[int] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.sent_ns = 0
        self.got_bytes = False
        self.complete = False
        self.keep_alive = False
        self.failed = False
        self.error: BaseException | None = None
        self.trailing = False  # bytes came after the answer: the connection carries no more
        self.unusable = False  # failed or trailing: the connection is to be closed
        self.location = ""
        self.content_type = ""
        self._interim = False  # the message being read is a 1xx answer
        self._framed = False  # Content-Length or chunked; else the body ends with the connection
        self._encoding = b""
        self._inflater: Inflater | None = None
        self._reader: Reader | None = None
        # Where a read of the body goes: the reader itself (the hot path), the inflater on the
        # way to it, or, until a reader is attached, a list (the body as sent, inflated later).
        self._deliver: Reader = self._keep_early
        self._early: list[tuple[bytes, int]] = []
        self._ended_early = False  # the answer ended before a reader was attached
        self._now_ns = 0
        self._pending: list[bytes] = []  # the body of the read being parsed, not yet delivered
        self._bodiless = 0  # bytes since the last byte of body, or since the answer's head
        self._closed_body = False  # a body without length, ended by its connection's close

    def received(self, data: bytes, now_ns: int) -> None:
        self.got_bytes = True
        self._now_ns = now_ns
        self._bodiless += len(data)  # on_body sets it back to 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # a callback raised: that is the cause
            cause = exc.__context__ or exc
            if isinstance(cause, _AfterAnswer):
                self.trailing = self.unusable = True
            else:
                self.fail(cause)
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._deliver_pending()  # the body before the break came all the same
            if self.complete:  # what came after the answer is not HTTP: still not ours
                self.trailing = self.unusable = True
            else:
                self.fail(PayloadError(f"malformed HTTP answer: {exc}") if self.head.done()
                          else BadResponse(f"not an HTTP answer: {exc}"))
            return
        self._deliver_pending()
        if self._bodiless > HEAD_LIMIT and not self.complete:
            self.fail(MalformedAnswer(f"more than {HEAD_LIMIT} bytes of the answer carried no "
                                      f"body") if self.head.done() else BadResponse(
                f"the answer's head (with any 1xx answers before it) is longer than "
                f"{HEAD_LIMIT} bytes"))

    def lost(self, exc: Exception | None) -> None:
        if self.complete:
            return
        if self.head.done() and not self._framed and exc is None:
            self._closed_body = True  # a body without length ends with its connection
            try:
                self.on_message_complete()
            except Exception as failure:  # the reader's, or a compressed body that is cut
                self.fail(failure)
            return
        reason = f": {exc}" if exc else ""
        if not self.got_bytes:
            self.fail(ServerDisconnected(f"Server disconnected{reason}"))
        elif not self.head.done():
            self.fail(BadResponse(f"the connection closed inside the answer's head{reason}"))
        else:
            self.fail(PayloadError(f"Response payload is not completed: the connection "
                                   f"closed inside the answer{reason}"))

    def attach(self, reader: Reader) -> None:
        early, self._early = self._early, []
        self._reader = reader
        self._deliver = reader if self._inflater is None else self._inflate
        try:
            for raw, now_ns in early:  # came with the head, at their own times
                self._now_ns = now_ns
                self._deliver(raw, now_ns)
            if self._ended_early:
                self._finish_body()
        except Exception as exc:  # as if raised where the read came: it ends the exchange
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        self.failed = self.unusable = True
        if self.error is None:
            self.error = exc
        for future in (self.head, self.done):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: the one awaited raises, the other stays quiet

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _AfterAnswer
        self._interim = self._framed = False
        self._encoding = b""
        self.location = self.content_type = ""

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding"
                                         and b"chunked" in value.lower()):
            self._framed = True
        elif name == b"content-encoding":
            self._encoding = value.strip().lower()
        elif name == b"location":
            self.location = value[:2048].decode("latin-1")
        elif name == b"content-type":
            self.content_type = value[:256].decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101:
            raise BadResponse("the server switched protocols (HTTP 101): no answer came")
        if 100 <= status < 200:  # 103 Early Hints, 100 Continue: the answer is still to come
            self._interim = True
            return
        self._bodiless = 0
        self.keep_alive = self._parser.should_keep_alive()
        if self._encoding in (b"gzip", b"x-gzip", b"deflate"):  # though we asked for identity
            self._inflater = Inflater(self._encoding)
        elif self._encoding not in (b"", b"identity"):
            raise BadResponse(f"unsupported Content-Encoding: {self._encoding.decode('latin-1')}")
        if not self.head.done():
            self.head.set_result(status)

    def on_body(self, body: bytes) -> None:
        self._bodiless = 0
        self._pending.append(body)  # delivered once the read is parsed (or the answer ends)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._pending:
            self._flush()
        if self._reader is None:
            self._ended_early = True
        else:
            self._finish_body()
        self.complete = True
        self._bodiless = 0
        if not self.done.done():
            self.done.set_result(None)

    # -- the body of a read, to the reader (or kept for it), inflated where it came compressed

    def _flush(self) -> None:
        """Deliver the body parsed from the current read; the reader may raise."""
        pending = self._pending
        body = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._deliver(body, self._now_ns)

    def _deliver_pending(self) -> None:
        """:meth:`_flush` outside the parser's callbacks: what the reader raises fails the
        answer, as it would have inside them."""
        if not self._pending:
            return
        try:
            self._flush()
        except Exception as exc:
            self.fail(exc)

    def _keep_early(self, body: bytes, now_ns: int) -> None:
        self._early.append((body, now_ns))  # as sent: a compressed body is inflated for a reader

    def _inflate(self, body: bytes, now_ns: int) -> None:
        assert self._reader is not None and self._inflater is not None
        try:
            for piece in self._inflater.feed(body):
                self._reader(piece, now_ns)
        except InflateError as exc:
            raise MalformedAnswer(str(exc)) from None

    def _finish_body(self) -> None:
        assert self._reader is not None
        if self._inflater is None:
            return
        inflater, self._inflater = self._inflater, None
        try:
            for piece in inflater.finish():
                self._reader(piece, self._now_ns)
        except InflateError as exc:
            # Compressed data that ends inside, where only the close ended the body: the
            # stream was cut (truncated), whether the close came before the reader or after.
            if exc.cut and self._closed_body:
                raise PayloadError(f"Response payload is not completed: {exc}") from None
            raise MalformedAnswer(str(exc)) from None

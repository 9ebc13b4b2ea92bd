"""Compressed answer bodies (gzip, deflate), inflated in bounded pieces.

The client asks for ``identity``; a server that compresses anyway is still read.  A few
compressed bytes can inflate to gigabytes, so the output comes out in pieces of at most
:data:`PIECE` bytes (never the whole inflated read at once), and a body that inflates more than
:data:`RATIO`-fold once past its first :data:`FREE` bytes is refused as a decompression bomb:
a streamed answer compressed message by message (uvicorn's and Starlette's gzip flush every
message) inflates about tenfold.  ``deflate`` is read zlib-wrapped, as HTTP says, or raw, as
many servers send it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = ["FREE", "PIECE", "RATIO", "InflateError", "Inflater"]

PIECE = 64 * 1024
RATIO = 100
FREE = 4 * 1024 * 1024


class InflateError(Exception):
    """The compressed body does not decode, or inflates like a bomb; ``cut``: all of it
    decodes, but it ends before the compressed data's end."""

    def __init__(self, message: str, *, cut: bool = False) -> None:
        super().__init__(message)
        self.cut = cut


class Inflater:
    """One answer's body, ``gzip`` or ``deflate``: feed it the body as it comes."""

    def __init__(self, encoding: bytes) -> None:
        self._name = encoding.decode("latin-1")
        gzip = encoding in (b"gzip", b"x-gzip")
        # 47: gzip or zlib, by the header; deflate waits for its first two bytes.
        self._decoder = zlib.decompressobj(wbits=47) if gzip else None
        self._start = b""
        self._taken = 0  # compressed bytes the decoder consumed
        self._made = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The inflated pieces of ``data``, at most :data:`PIECE` bytes each."""
        if self._decoder is None:
            data = self._start + data
            if len(data) < 2:
                self._start = data
                return
            self._start = b""
            self._decoder = zlib.decompressobj(wbits=15 if _zlib_header(data) else -15)
        yield from self._inflate(data)

    def finish(self) -> Iterator[bytes]:
        """The body ended: what the decoder still held; raises if the compressed data has not
        ended (an empty body is no compressed data, and fine)."""
        if self._decoder is None:
            if self._start:
                raise self._broken("it ends before its end", cut=True)
            return
        yield from self._inflate(b"")
        if not self._decoder.eof and (self._taken or self._made):
            raise self._broken("it ends before its end", cut=True)

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        decoder = self._decoder
        assert decoder is not None
        while not decoder.eof:
            try:
                piece = decoder.decompress(data, PIECE)
            except zlib.error as exc:
                raise self._broken(str(exc)) from None
            self._taken += len(data) - len(decoder.unconsumed_tail)
            data = decoder.unconsumed_tail
            self._made += len(piece)
            if self._made > FREE and self._made > RATIO * self._taken:
                raise self._broken(f"it inflates more than {RATIO}-fold ({self._taken} bytes "
                                   f"to over {self._made}), refused as a decompression bomb")
            if piece:
                yield piece
            if not data and len(piece) < PIECE:  # all taken, nothing held back
                break
        if decoder.eof and (data or decoder.unused_data):
            raise self._broken("bytes after its end")

    def _broken(self, why: str, *, cut: bool = False) -> InflateError:
        return InflateError(f"the {self._name} body cannot be decoded: {why}", cut=cut)


def _zlib_header(data: bytes) -> bool:
    """The two bytes that start zlib-wrapped deflate (RFC 1950): method 8, a valid check."""
    return data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0

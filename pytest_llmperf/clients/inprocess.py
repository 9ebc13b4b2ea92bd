"""The request sender of an in-process engine: no network, a worker thread does the generating.

:class:`InProcessClient` hands each request to an engine (anything with ``submit``, see
:class:`InProcessEngine`) as an :class:`InProcessRequest`, then waits on its event loop for the
request's events: one :class:`TokenEvent` per generated token, then one :class:`EndEvent`.  The
engine's worker thread emits them with :meth:`InProcessRequest.emit` and
:meth:`InProcessRequest.finish`, which pass them to the sender's loop with
``call_soon_threadsafe``.  Token timestamps are the worker's own readings, taken when each token
exists; the client copies them into the record and never re-times them, so a busy event loop
cannot delay them.

Standard library only (plus the package's records): the transformers engine imports this module,
never the other way round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from pytest_llmperf.clients.base import Prompt, Turn, as_prompt, timeout_message
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.records import RequestRecord, TokenSource

__all__ = ["EndEvent", "InProcessClient", "InProcessEngine", "InProcessRequest", "RequestEvent",
           "TokenEvent"]


@dataclass(frozen=True)
class TokenEvent:
    """One generated token, timed (``perf_counter_ns``) in the worker thread."""

    token_id: int
    t_ns: int


@dataclass(frozen=True)
class EndEvent:
    """The request's last event: it ended at ``t_ns``, with an answer or with ``error``."""

    t_ns: int
    finish_reason: str | None = None
    error: str | None = None
    input_tokens: int | None = None
    error_kind: ErrorKind = ErrorKind.IN_BAND  # with an error: what kind (results.errors)


RequestEvent = TokenEvent | EndEvent


@dataclass(eq=False)
class InProcessRequest:
    """One request, shared by its sender (event loop thread) and the worker thread.

    The worker owns ``generated``, ``done`` and ``input_tokens``; the sender only sets
    ``abandoned``, after which the worker's events are dropped and the engine may drop the
    request unanswered.
    """

    prompt: str
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[RequestEvent]
    history: tuple[Turn, ...] = ()  # earlier chat turns before ``prompt``
    abandoned: bool = False  # the sender gave up (timeout, cancelled, loop closed)
    generated: int = 0  # tokens emitted so far
    done: bool = False  # the end event has been emitted
    input_tokens: int | None = None  # prompt tokens, as the engine counted them

    def emit(self, event: RequestEvent) -> None:
        """Hand ``event`` to the sender's loop; a loop that is gone abandons the request."""
        if self.abandoned:
            return
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody will read this answer
            self.abandoned = True

    def finish(self, t_ns: int, finish_reason: str | None = None,
               error: str | None = None, kind: ErrorKind = ErrorKind.IN_BAND) -> None:
        """Emit the end event, once: later calls do nothing.  ``kind`` says what an error
        was: by default one the engine raised while answering."""
        if self.done:
            return
        self.done = True
        self.emit(EndEvent(t_ns, finish_reason, error, self.input_tokens, kind))


class InProcessEngine(Protocol):
    """What :class:`InProcessClient` needs from an engine.

    ``submit`` queues the request and returns at once, from the sender's thread; from then on
    the engine emits the request's tokens and ends it with ``finish`` (from any thread), or
    fails it with ``finish(..., error=...)``, possibly inside ``submit`` itself.
    """

    def submit(self, request: InProcessRequest) -> None: ...


class InProcessClient:
    """The :class:`~pytest_llmperf.clients.openai.RequestSender` of an in-process engine.

    ``send`` submits the request and collects its tokens' worker-side timestamps; the record has
    one ``chunk_ns`` per generated token, and engine-counted input and output tokens.  A request
    with no end within ``timeout_s`` gets an error record.  Use as ``async with``.
    """

    def __init__(self, engine: InProcessEngine, *, max_tokens: int, timeout_s: float,
                 first_token_timeout_s: float | None = None):
        self.engine = engine
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s  # the whole answer
        self.first_token_timeout_s = first_token_timeout_s  # None: only the whole answer's

    async def __aenter__(self) -> InProcessClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def send(self, request_id: int, prompt: Prompt | str) -> RequestRecord:
        prompt = as_prompt(prompt)
        max_tokens = prompt.max_tokens(self.max_tokens)
        send_ns = time.perf_counter_ns()
        request = InProcessRequest(prompt.text, max_tokens, asyncio.get_running_loop(),
                                   asyncio.Queue(), history=prompt.history)
        chunks: list[int] = []
        self.engine.submit(request)
        try:
            async with asyncio.timeout(self.timeout_s):
                async with asyncio.timeout(self.first_token_timeout_s) as first_token:
                    end = await _collect(request.events, chunks,
                                         first_token.reschedule if self.first_token_timeout_s
                                         else None)
        except TimeoutError:
            end = EndEvent(time.perf_counter_ns(), error_kind=ErrorKind.TIMEOUT,
                           error=timeout_message(self.timeout_s, self.first_token_timeout_s,
                                                 answered=bool(chunks)))
        finally:
            request.abandoned = True  # finished, timed out or cancelled: send nothing more
        error, kind = end.error, end.error_kind
        if error is None and not chunks:
            error, kind = "the engine generated no token", ErrorKind.EMPTY
        return RequestRecord(
            request_id=request_id,
            send_ns=send_ns,
            chunk_ns=tuple(chunks),
            end_ns=end.t_ns,
            output_tokens=len(chunks),
            output_token_source=TokenSource.ENGINE if chunks else None,
            input_tokens=end.input_tokens,
            input_token_source=TokenSource.ENGINE if end.input_tokens is not None else None,
            finish_reason=end.finish_reason,
            error=error,
            error_kind=None if error is None else kind.value,
            max_tokens=max_tokens,
            dataset_input_tokens=prompt.input_tokens,
        )


async def _collect(events: asyncio.Queue[RequestEvent], chunks: list[int],
                   first_token_met: Callable[[None], None] | None) -> EndEvent:
    while True:
        event = await events.get()
        if isinstance(event, EndEvent):
            return event
        chunks.append(event.t_ns)
        if first_token_met is not None:  # the first token came: lift its limit
            first_token_met(None)
            first_token_met = None

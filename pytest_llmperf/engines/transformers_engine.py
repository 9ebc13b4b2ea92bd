"""An in-process engine: Hugging Face ``transformers`` ``generate`` behind a batching worker.

Scheduling is **static batching**: one worker thread takes every waiting request (up to
``max_num_seqs``, all asking for the same ``max_tokens``), left-pads them into one batch and runs
one ``model.generate`` call for it.  Requests that arrive while a batch runs wait for the next
batch; a row that ends early (EOS) leaves its slot idle until the whole batch ends.  After the
first request of a batch arrives the worker waits at most ``gather_s`` (2 ms) for others sent at
the same moment, so that N users sending together share one batch; that wait is part of TTFT.

Each generated token is timed in the worker thread, by ``time.perf_counter_ns()`` inside the
streamer's ``put``, which ``generate`` calls once per decoding step as soon as the step's tokens
exist on the host; the event loop only receives the readings (``call_soon_threadsafe``), so a
busy loop cannot delay them.  Output tokens are counted from token ids, one per decoding step
until the row's EOS (not counted) or ``max_tokens``.

This module imports torch and transformers: only the transformers backend's ``serve`` imports
it, never the plugin at startup.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from pytest_llmperf.results.records import RequestRecord, TokenSource

__all__ = ["InProcessClient", "TransformersEngine"]

_ERROR_TEXT_LIMIT = 300
_STOPPED = "the transformers engine stopped before the answer was complete"


@dataclass(frozen=True)
class _Token:
    token_id: int
    t_ns: int


@dataclass(frozen=True)
class _End:
    t_ns: int
    finish_reason: str | None = None
    error: str | None = None
    input_tokens: int | None = None


_Event = _Token | _End


@dataclass(eq=False)
class _Request:
    """One request, shared by its sender (event loop thread) and the worker thread.

    The worker owns ``generated`` and ``done``; the sender only sets ``abandoned``.
    """

    prompt: str
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[_Event]
    abandoned: bool = False  # the sender gave up (timeout, cancelled, loop closed)
    generated: int = 0
    done: bool = False
    input_tokens: int | None = None

    def emit(self, event: _Event) -> None:
        """Hand ``event`` to the sender's loop; a loop that is gone abandons the request."""
        if self.abandoned:
            return
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody will read this answer
            self.abandoned = True

    def finish(self, t_ns: int, finish_reason: str | None = None,
               error: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.emit(_End(t_ns, finish_reason, error, self.input_tokens))


class _BatchStreamer(BaseStreamer):  # type: ignore[misc, unused-ignore]
    """Turns ``generate``'s per-step tokens into per-request events, timed in this thread.

    ``put`` gets the prompt ids first, then once per step the new token of every row, shape
    (batch,) or (batch, 1).  Pad tokens after a row's EOS are not its tokens.
    """

    def __init__(self, rows: Sequence[_Request], eos_ids: frozenset[int], stop_at_eos: bool):
        self.rows = rows
        self.eos_ids = eos_ids
        self.stop_at_eos = stop_at_eos
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        now = time.perf_counter_ns()  # first: the token exists now, whatever follows
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(-1).tolist(), strict=True):
            if row.done:
                continue
            if self.stop_at_eos and token in self.eos_ids:
                row.finish(now, "stop")
                continue
            row.generated += 1
            row.emit(_Token(int(token), now))
            if row.generated >= row.max_tokens:
                row.finish(now, "length")

    def end(self) -> None:
        pass  # the worker ends whatever rows are still open once generate returns


class _StopAbandoned(StoppingCriteria):  # type: ignore[misc, unused-ignore]
    """Ends rows nobody waits for any more, and every row once the engine is closing."""

    def __init__(self, rows: Sequence[_Request], engine: TransformersEngine):
        self.rows = rows
        self.engine = engine

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        stopping = self.engine.stopping
        return torch.tensor([stopping or row.abandoned for row in self.rows],
                            dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    """A loaded model and the worker thread that batches requests into ``generate`` calls.

    ``start`` starts the worker, ``close`` stops it; :meth:`client` opens a
    :class:`InProcessClient` (the ``ServedModel.open_client`` of the transformers backend).
    ``batch_sizes`` lists the size of every batch run so far, for reports and tests.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_num_seqs: int,
        ignore_eos: bool,
        gather_s: float = 0.002,
    ) -> None:
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_num_seqs = max_num_seqs
        self.ignore_eos = ignore_eos
        self.gather_s = gather_s
        self.batch_sizes: list[int] = []
        self.stopping = False
        # Decoder-only batches are padded on the left so every row's next token is at the end.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # pad rows are masked out anyway
        self.eos_ids = _eos_ids(model, tokenizer)
        self.use_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.on_cuda = _device(model).type == "cuda"
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Request] = collections.deque()
        self._dead: str | None = None  # why the worker is gone; new requests fail with it
        self._thread = threading.Thread(target=self._work, name="llmperf-transformers",
                                        daemon=True)

    # -- lifetime ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop the worker: the running batch ends at its next step, waiting requests fail."""
        with self._cond:
            self.stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._fail_waiting(_STOPPED)
        # Clients opened from this engine may outlive it: they must not keep the model alive.
        self.model = None
        self.tokenizer = None

    def client(self, max_tokens: int, timeout_s: float) -> InProcessClient:
        return InProcessClient(self, max_tokens=max_tokens, timeout_s=timeout_s)

    # -- the sender's side -------------------------------------------------------------------

    def submit(self, request: _Request) -> None:
        with self._cond:
            if self._dead is not None or self.stopping:
                request.finish(time.perf_counter_ns(), error=self._dead or _STOPPED)
                return
            self._waiting.append(request)
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """Requests queued for the next batch."""
        with self._cond:
            return len(self._waiting)

    # -- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while (batch := self._take_batch()) is not None:
                self._run_batch(batch)
        except BaseException as exc:  # a bug here must not leave senders waiting forever
            self._dead = f"the transformers worker died: {_describe(exc)}"
            raise
        finally:
            self._fail_waiting(self._dead or _STOPPED)

    def _take_batch(self) -> list[_Request] | None:
        """The next batch; None once the engine is closing."""
        batch: list[_Request] = []
        while not batch:
            with self._cond:
                while not self.stopping and not self._waiting:
                    self._cond.wait()
                batch = [] if self.stopping else self._gather()
            if self.stopping:
                return None
        return batch

    def _gather(self) -> list[_Request]:
        """Take the requests of one batch; called holding the lock, with requests waiting."""
        # Requests sent together reach us a few microseconds apart: wait briefly for them.
        deadline = time.monotonic() + self.gather_s
        while (not self.stopping and len(self._waiting) < self.max_num_seqs
               and (remaining := deadline - time.monotonic()) > 0):
            self._cond.wait(remaining)
        if self.stopping:
            return []
        # Abandoned requests are dropped: their senders have already returned error records.
        live = [request for request in self._waiting if not request.abandoned]
        batch: list[_Request] = []
        rest: collections.deque[_Request] = collections.deque()
        for request in live:
            if request.max_tokens == live[0].max_tokens and len(batch) < self.max_num_seqs:
                batch.append(request)
            else:
                rest.append(request)
        self._waiting = rest
        return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            self._generate(batch)
        except Exception as exc:
            if isinstance(exc, torch.OutOfMemoryError) and self.on_cuda:
                torch.cuda.empty_cache()  # the next batch may fit once this one's memory is back
            now = time.perf_counter_ns()
            for request in batch:
                request.finish(now, error=f"generate failed: {_describe(exc)}")
            return
        now = time.perf_counter_ns()
        for request in batch:
            # Open only when generate ended the row itself (the engine is closing): no answer.
            request.finish(now, error=_STOPPED if self.stopping else None,
                           finish_reason=None if self.stopping else "stop")

    def _generate(self, batch: list[_Request]) -> None:
        if self.use_chat_template:
            texts = [self.tokenizer.apply_chat_template(
                [{"role": "user", "content": r.prompt}], tokenize=False,
                add_generation_prompt=True) for r in batch]
        else:
            texts = [r.prompt for r in batch]
        # A chat template writes the special tokens itself; raw text gets the tokenizer's own.
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=not self.use_chat_template)
        for request, mask in zip(batch, encoded["attention_mask"], strict=True):
            request.input_tokens = int(mask.sum())
        max_tokens = batch[0].max_tokens
        # Greedy and our lengths override the model's generation config, which fills the rest.
        config = GenerationConfig(  # type: ignore[no-untyped-call, unused-ignore]
            max_new_tokens=max_tokens,
            # min_new_tokens masks EOS until max_tokens: exactly max_tokens tokens per row.
            min_new_tokens=max_tokens if self.ignore_eos else None,
            do_sample=False,
            eos_token_id=sorted(self.eos_ids) or None,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        device = _device(self.model)
        self.model.generate(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=encoded["attention_mask"].to(device),
            generation_config=config,
            streamer=_BatchStreamer(batch, self.eos_ids, stop_at_eos=not self.ignore_eos),
            stopping_criteria=StoppingCriteriaList([_StopAbandoned(batch, self)]),
        )

    def _fail_waiting(self, error: str) -> None:
        with self._cond:
            waiting, self._waiting = self._waiting, collections.deque()
        now = time.perf_counter_ns()
        for request in waiting:
            request.finish(now, error=error)


class InProcessClient:
    """The :class:`~pytest_llmperf.clients.openai.RequestSender` of a :class:`TransformersEngine`.

    ``send`` queues the request and collects its tokens' worker-side timestamps; the record has
    one ``chunk_ns`` per generated token.  Use as ``async with``.
    """

    def __init__(self, engine: TransformersEngine, *, max_tokens: int, timeout_s: float):
        self.engine = engine
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s

    async def __aenter__(self) -> InProcessClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def send(self, request_id: int, prompt: str) -> RequestRecord:
        send_ns = time.perf_counter_ns()
        request = _Request(prompt, self.max_tokens, asyncio.get_running_loop(), asyncio.Queue())
        chunks: list[int] = []
        self.engine.submit(request)
        try:
            end = await asyncio.wait_for(_collect(request.events, chunks), self.timeout_s)
        except asyncio.TimeoutError:
            end = _End(time.perf_counter_ns(),
                       error=f"no complete answer within {self.timeout_s:g} s")
        finally:
            request.abandoned = True  # finished, timed out or cancelled: send nothing more
        error = end.error
        if error is None and not chunks:
            error = "the engine generated no token"
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
        )


async def _collect(events: asyncio.Queue[_Event], chunks: list[int]) -> _End:
    while True:
        event = await events.get()
        if isinstance(event, _End):
            return event
        chunks.append(event.t_ns)


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The ids that end an answer: the generation config's, else the tokenizer's EOS."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    if configured is None:
        return frozenset()
    if isinstance(configured, int):
        return frozenset((configured,))
    return frozenset(int(i) for i in configured)


def _device(model: Any) -> Any:
    """Where inputs go: the model's first device (accelerate moves them on between GPUs)."""
    with contextlib.suppress(AttributeError):
        return model.device
    return next(model.parameters()).device


def _describe(exc: BaseException) -> str:
    """One line for an error record; an OOM always says "out of memory", whatever torch wrote."""
    text = " ".join(str(exc).split())
    if isinstance(exc, torch.OutOfMemoryError) and "out of memory" not in text.lower():
        text = f"out of memory {text}".rstrip()
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[:_ERROR_TEXT_LIMIT] + "..."

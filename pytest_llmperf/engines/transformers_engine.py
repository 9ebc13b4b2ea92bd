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

Requests arrive as :class:`~pytest_llmperf.clients.inprocess.InProcessRequest` objects, sent
by the :class:`~pytest_llmperf.clients.inprocess.InProcessClient` that
:meth:`TransformersEngine.client` opens; that module holds the engine-agnostic side (request,
events, the record) and imports no torch.

This module imports torch and transformers: only the transformers backend's ``serve`` imports
it, never the plugin at startup.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from pytest_llmperf.clients.inprocess import InProcessClient, InProcessRequest, TokenEvent
from pytest_llmperf.results.errors import ErrorKind

__all__ = ["TransformersEngine"]

_ERROR_TEXT_LIMIT = 300
_STOPPED = "the transformers engine stopped before the answer was complete"


class _BatchStreamer(BaseStreamer):  # type: ignore[misc, unused-ignore]
    """Turns ``generate``'s per-step tokens into per-request events, timed in this thread.

    ``put`` gets the prompt ids first, then once per step the new token of every row, shape
    (batch,) or (batch, 1).  Pad tokens after a row's EOS are not its tokens.
    """

    def __init__(self, rows: Sequence[InProcessRequest], eos_ids: frozenset[int],
                 stop_at_eos: bool):
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
            row.emit(TokenEvent(int(token), now))
            if row.generated >= row.max_tokens:
                row.finish(now, "length")

    def end(self) -> None:
        pass  # the worker ends whatever rows are still open once generate returns


class _StopAbandoned(StoppingCriteria):  # type: ignore[misc, unused-ignore]
    """Ends rows nobody waits for any more, and every row once the engine is closing."""

    def __init__(self, rows: Sequence[InProcessRequest], engine: TransformersEngine):
        self.rows = rows
        self.engine = engine

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        stopping = self.engine.stopping
        return torch.tensor([stopping or row.abandoned for row in self.rows],
                            dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    """A loaded model and the worker thread that batches requests into ``generate`` calls.

    ``start`` starts the worker, ``close`` stops it; :meth:`client` opens a
    :class:`~pytest_llmperf.clients.inprocess.InProcessClient` on it (the
    ``ServedModel.open_client`` of the transformers backend), whose requests reach ``submit``.
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
        self._waiting: collections.deque[InProcessRequest] = collections.deque()
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
        self._fail_waiting(_STOPPED, ErrorKind.ABORTED)
        # Clients opened from this engine may outlive it: they must not keep the model alive.
        self.model = None
        self.tokenizer = None

    def client(self, max_tokens: int, timeout_s: float,
               first_token_timeout_s: float | None = None) -> InProcessClient:
        return InProcessClient(self, max_tokens=max_tokens, timeout_s=timeout_s,
                               first_token_timeout_s=first_token_timeout_s)

    # -- the sender's side -------------------------------------------------------------------

    def submit(self, request: InProcessRequest) -> None:
        """Queue ``request`` for a batch; a stopped or dead engine fails it at once."""
        with self._cond:
            if self._dead is not None or self.stopping:
                request.finish(time.perf_counter_ns(), error=self._dead or _STOPPED,
                               kind=ErrorKind.SERVER_DIED if self._dead else ErrorKind.ABORTED)
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
            self._fail_waiting(self._dead or _STOPPED,
                               ErrorKind.SERVER_DIED if self._dead else ErrorKind.ABORTED)

    def _take_batch(self) -> list[InProcessRequest] | None:
        """The next batch; None once the engine is closing."""
        batch: list[InProcessRequest] = []
        while not batch:
            with self._cond:
                while not self.stopping and not self._waiting:
                    self._cond.wait()
                batch = [] if self.stopping else self._gather()
            if self.stopping:
                return None
        return batch

    def _gather(self) -> list[InProcessRequest]:
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
        batch: list[InProcessRequest] = []
        rest: collections.deque[InProcessRequest] = collections.deque()
        for request in live:
            if request.max_tokens == live[0].max_tokens and len(batch) < self.max_num_seqs:
                batch.append(request)
            else:
                rest.append(request)
        self._waiting = rest
        return batch

    def _run_batch(self, batch: list[InProcessRequest]) -> None:
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
                           finish_reason=None if self.stopping else "stop",
                           kind=ErrorKind.ABORTED)

    def _generate(self, batch: list[InProcessRequest]) -> None:
        if self.use_chat_template:
            texts = [self.tokenizer.apply_chat_template(
                [*({"role": role, "content": text} for role, text in r.history),
                 {"role": "user", "content": r.prompt}], tokenize=False,
                add_generation_prompt=True) for r in batch]
        else:
            texts = ["\n\n".join([*(text for _, text in r.history), r.prompt]) for r in batch]
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

    def _fail_waiting(self, error: str, kind: ErrorKind) -> None:
        with self._cond:
            waiting, self._waiting = self._waiting, collections.deque()
        now = time.perf_counter_ns()
        for request in waiting:
            request.finish(now, error=error, kind=kind)


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

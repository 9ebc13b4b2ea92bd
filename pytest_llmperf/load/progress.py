"""The progress line of a long window: how many answers, at what rate, how many failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from pytest_llmperf.clients.base import RequestSender
from pytest_llmperf.prompts.builtin import Prompt
from pytest_llmperf.results.records import RequestRecord

__all__ = ["PROGRESS_EVERY_S", "Counting", "Tally", "tell_progress"]

PROGRESS_EVERY_S = 15.0


class Tally(Protocol):
    """Answers so far: requests done, output tokens, failed requests."""

    @property
    def done(self) -> int: ...

    @property
    def tokens(self) -> int: ...

    @property
    def errors(self) -> int: ...


class Counting:
    """The window's client, counting answers for the progress line (no work per chunk)."""

    def __init__(self, client: RequestSender) -> None:
        self.client = client
        self.done = self.tokens = self.errors = 0

    async def send(self, request_id: int, prompt: Prompt) -> RequestRecord:
        record = await self.client.send(request_id, prompt)
        self.done += 1
        self.tokens += record.output_tokens
        self.errors += record.error is not None
        return record


async def tell_progress(tally: Tally, report: Callable[[str], None], label: str,
                        planned: str, every_s: float) -> None:
    """``test_x 4 users: 23 of 68 requests answered (4 warm-up), 87.1 tok/s, 0 failed, 30 s``
    every ``every_s`` seconds, so a long window is seen to move."""
    began = last = time.monotonic()
    tokens = 0
    while True:
        await asyncio.sleep(every_s)
        now = time.monotonic()
        rate = (tally.tokens - tokens) / (now - last)
        last, tokens = now, tally.tokens
        report(f"{label}: {tally.done}{planned}, {rate:.1f} tok/s, {tally.errors} failed, "
               f"{now - began:.0f} s")

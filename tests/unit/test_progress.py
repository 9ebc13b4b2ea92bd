"""The progress line of a long window: answers so far, the recent token rate, errors."""

from __future__ import annotations

import asyncio

from pytest_llmperf.load.progress import Counting, tell_progress
from pytest_llmperf.results.records import RequestRecord


class Instant:
    async def send(self, request_id: int, prompt: str) -> RequestRecord:
        return RequestRecord(request_id, 0, (1,), 1, 10,
                             error="HTTP 500" if request_id == 2 else None)


def test_the_progress_line_counts_answers_tokens_and_errors() -> None:
    lines: list[str] = []

    async def run() -> None:
        counting = Counting(Instant())
        ticker = asyncio.create_task(tell_progress(
            counting, lines.append, "test_x 4 users", " of 8 requests answered (2 warm-up)",
            0.05))
        for request_id in range(5):
            await counting.send(request_id, "p")
        await asyncio.sleep(0.07)
        ticker.cancel()

    asyncio.run(run())
    (line,) = lines
    head, rate, errors, _ = line.split(", ")
    assert head == "test_x 4 users: 5 of 8 requests answered (2 warm-up)"
    assert float(rate.split()[0]) > 0 and errors == "1 failed"

"""A window's figures per image size (images in chat, prompts.images): how TTFT grows with the
image a request carries, and how many prompt tokens the server counted for it.

Each size's figures are the window's own metrics over the requests that carried it (the same
definitions: results.metrics).  ``input_tokens_median`` is the server's ``usage.prompt_tokens``
(the text and the image together; the tokenizer cannot count an image, so a request without
usage counts none); the growth from one size to the next is what the larger image cost.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.records import LoadRun, RequestRecord

__all__ = ["ImageSizeFigures", "image_size_figures"]


@dataclass(frozen=True)
class ImageSizeFigures:
    """The requests of one image size."""

    size: str  # 512x512
    requests: int
    failed: int
    ttft_ms_median: float | None
    ttft_ms_p95: float | None
    input_tokens_median: float | None  # the server's prompt tokens, image included


def image_size_figures(run: LoadRun) -> tuple[ImageSizeFigures, ...]:
    """Each image size's figures, smallest image first; empty when no request had one."""
    sent: dict[str, list[RequestRecord]] = {}
    for record in run.records:
        if record.image_size is not None:
            sent.setdefault(record.image_size, []).append(record)
    figures = []
    for size, records in sorted(sent.items(), key=lambda item: _pixels(item[0])):
        metrics = summarize(LoadRun(tuple(records), run.window_start_ns, run.window_end_ns,
                                    run.concurrency, 0))
        counted = [r.input_tokens for r in records if r.ok and r.input_tokens is not None]
        figures.append(ImageSizeFigures(
            size, len(records), sum(not r.ok for r in records),
            metrics.value("ttft_ms", "median"), metrics.value("ttft_ms", "p95"),
            statistics.median(counted) if counted else None))
    return tuple(figures)


def _pixels(size: str) -> int:
    width, _, height = size.partition("x")
    return int(width) * int(height) if width.isdigit() and height.isdigit() else 0

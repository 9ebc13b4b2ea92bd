"""Reading a launched server's log: its tail for messages, its last line for progress, the line
that says it ran out of memory.  Each read takes at most the log's last few MiB, however big
the log has grown."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEFAULT_OOM_PATTERNS", "OOM_HINT", "last_log_line", "log_lines", "log_tail",
           "oom_line", "shorten"]

# Log text that means "out of memory" whatever the engine; each engine adds its own.
DEFAULT_OOM_PATTERNS: tuple[str, ...] = (
    "CUDA out of memory",
    "torch.OutOfMemoryError",
    "OutOfMemoryError",
    "No available memory for the cache blocks",
    "requires more system memory",
    "cudaMalloc failed",
)

OOM_HINT = (
    "hint: ask for less (a smaller --llmperf-max-model-len or --llmperf-max-num-seqs), use more "
    "GPUs (--gpus, --llmperf-tp), or lower --llmperf-gpu-memory-utilization when other "
    "processes share the GPU"
)

_OOM_LINE_CHARS = 400
_LOG_SCAN_BYTES = 4 << 20  # the OOM search reads at most the log's last 4 MiB
_TAIL_BYTES = 64 << 10  # a tail of 20 lines comes from the last 64 KiB
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def log_lines(path: Path, max_bytes: int, since: int = 0) -> list[str]:
    """The log's lines (of its last ``max_bytes``, none before offset ``since``), colour codes
    and progress bars undone."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(since, size - max_bytes))
            data = log.read()
    except OSError:
        return []
    text = _ANSI.sub("", data.decode("utf-8", errors="replace"))
    # A progress bar redraws its line with \r: each redraw is a line of its own.
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def last_log_line(path: Path) -> str | None:
    lines = log_lines(path, 16 << 10)
    return lines[-1].strip() if lines else None


def log_tail(path: Path, lines: int = 20) -> str:
    """The log's last ``lines``, indented for a message."""
    if not path.exists():
        return "(no log)"
    tail = log_lines(path, _TAIL_BYTES)[-lines:]
    return "\n".join(f"    {line.rstrip()}" for line in tail) or "(log is empty)"


def oom_line(path: Path, patterns: Sequence[str]) -> str | None:
    """The first log line that matches an OOM pattern (case-insensitive), or None."""
    lowered_patterns = [p.lower() for p in patterns if p]
    for line in log_lines(path, _LOG_SCAN_BYTES):
        lowered = line.lower()
        if any(pattern in lowered for pattern in lowered_patterns):
            return shorten(line.strip(), _OOM_LINE_CHARS)
    return None


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

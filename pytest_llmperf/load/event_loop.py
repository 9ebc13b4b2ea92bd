"""The client's event loop for one measured window: asyncio's own, or uvloop's.

Before the loop starts, everything alive is collected once and frozen (``gc.freeze``, as vLLM's
benchmark does): the collector then never walks the session's objects in the window, and a
pause it makes is short.  The window's own objects are still collected.

Every connection is a file descriptor: with a soft ``RLIMIT_NOFILE`` of 1024 (a common default)
a thousand users would fail as connection errors that look like the server's.  The first window
raises the soft limit to the hard one (:func:`raise_open_files_limit`), once per process; the
client processes forked after it inherit it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["EVENT_LOOPS", "raise_open_files_limit", "run_client"]

EVENT_LOOPS = ("asyncio", "uvloop")
T = TypeVar("T")
_NR_OPEN = Path("/proc/sys/fs/nr_open")  # Linux: the most a limit may be set to
_open_files: int | None = None  # the soft limit once raised


def raise_open_files_limit() -> int | None:
    """The soft ``RLIMIT_NOFILE`` raised to the hard limit (the first call does it); returns
    the soft limit now, None where there is no such limit."""
    global _open_files
    if _open_files is not None:
        return _open_files
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard
    if hard == resource.RLIM_INFINITY:  # no process may have that many: the kernel's most
        wanted = 1 << 20
        with contextlib.suppress(OSError, ValueError):
            wanted = int(_NR_OPEN.read_text())
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        _open_files = soft
        return soft
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    _open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _open_files


def run_client(coroutine: Coroutine[Any, Any, T], event_loop: str = "asyncio") -> T:
    """Run ``coroutine`` to its end on a new loop of kind ``event_loop``."""
    gc.collect()
    gc.freeze()
    try:
        if event_loop == "uvloop":
            import uvloop  # an option (pip install uvloop); settings checked it is there

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(coroutine)
        if event_loop != "asyncio":
            raise ValueError(f"event loop {event_loop!r}: expected one of "
                             f"{', '.join(EVENT_LOOPS)}")
        return asyncio.run(coroutine)
    finally:
        gc.unfreeze()

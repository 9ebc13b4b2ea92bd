"""The client's event loop for one measured window: asyncio's own, or uvloop's.

Before the loop starts, everything alive is collected once and frozen (``gc.freeze``, as vLLM's
benchmark does): the collector then never walks the session's objects in the window, and a
pause it makes is short.  The window's own objects are still collected.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["EVENT_LOOPS", "run_client"]

EVENT_LOOPS = ("asyncio", "uvloop")
T = TypeVar("T")


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

"""A launched server's log is read in bounded pieces, however big it has grown.

An engine that logs every request can write gigabytes in a long session; the tail in an error
message, the progress line and the out-of-memory search each read only the log's end.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from pytest_llmperf.engines.lifecycle import ManagedServer

LOG_BYTES = 2 << 30  # 2 GiB, sparse: no disk is spent on it


def test_a_2_gib_log_costs_no_memory(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    with log.open("wb") as out:
        out.truncate(LOG_BYTES - 200)
        out.seek(0, 2)
        out.write(b"\nINFO request 123 done\n")
        out.write(b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    server = ManagedServer("stub-engine", ["true"], health_url="http://127.0.0.1:9/health",
                           log_path=log)
    tracemalloc.start()
    try:
        tail = server.log_tail(2)
        oom = server.oom_line()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tail.splitlines() == ["    INFO request 123 done",
                                 "    torch.OutOfMemoryError: CUDA out of memory. Tried to "
                                 "allocate 2.00 GiB"]
    assert oom is not None and oom.startswith("torch.OutOfMemoryError")
    assert peak < 64 << 20, f"reading the log's end took {peak >> 20} MiB"

"""Run a measuring-instrument stub (sse_stub.py, or fast_stub.py) in its own process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from pytest_llmperf.engines.lifecycle import free_port

STUB = Path(__file__).resolve().parent / "sse_stub.py"
FAST_STUB = Path(__file__).resolve().parent / "fast_stub.py"


@contextlib.contextmanager
def running_stub(*args: str, script: Path = STUB) -> Iterator[str]:
    """The stub ``script`` started with ``args`` (its command-line options); yields its /v1
    URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(script), str(port), *args])
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the stub server did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)

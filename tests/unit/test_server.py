"""ManagedServer with real child processes: start, readiness, progress, the log, OOM lines.

Every program here is a few lines of Python written to tmp_path and run with sys.executable
(faults, with their proof that no process is left, are in test_server_faults.py).  The
``leftovers`` fixture fails a test that leaves any process behind (and kills it).
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from pytest_llmperf.engines.lifecycle import (
    DEFAULT_OOM_PATTERNS,
    ManagedServer,
    ServerStartError,
    free_port,
    set_progress_reporter,
    stop_all_servers,
)

# A /health endpoint on the port given as argv[1], answering with the status in argv[2].
HEALTH_SERVER = """
import http.server
import sys

PORT, STATUS = int(sys.argv[1]), int(sys.argv[2])


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(STATUS if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", PORT), Health)
print(f"main: server is listening on http://127.0.0.1:{PORT}", flush=True)
server.serve_forever()
"""

def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a zombie has exited; it only awaits reaping)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids a test must not leave running; the test's new child processes are checked too."""
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    watched: list[int] = []
    yield watched
    stop_all_servers()
    new_children = [c.pid for c in me.children(recursive=True) if c.pid not in before]
    left = sorted({pid for pid in [*watched, *new_children] if alive(pid)})
    for pid in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    assert left == [], f"processes left running: {left}"


def program(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def managed(
    tmp_path: Path,
    source: str,
    *args: str,
    port: int | None = None,
    ready_timeout_s: float = 10.0,
    stop_grace_s: float = 2.0,
    progress_interval_s: float = 10.0,
    oom_patterns: tuple[str, ...] = (),
) -> ManagedServer:
    port = free_port() if port is None else port
    script = program(tmp_path, "server.py", source)
    return ManagedServer(
        "stub-engine",
        [sys.executable, str(script), str(port), *args],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=tmp_path / "logs" / "server.log",
        ready_timeout_s=ready_timeout_s,
        stop_grace_s=stop_grace_s,
        progress_interval_s=progress_interval_s,
        oom_patterns=oom_patterns,
    )


# --- lifecycle --------------------------------------------------------------------------


def test_healthy_server_lifecycle(tmp_path: Path, leftovers: list[int]) -> None:
    server = managed(tmp_path, HEALTH_SERVER, "200")
    server.log_path.parent.mkdir(parents=True)
    server.log_path.write_text("OLD RUN: something went wrong last time\n", encoding="utf-8")

    with server as entered:
        assert entered is server
        assert server.pid is not None
        leftovers.append(server.pid)
        assert alive(server.pid)
        assert requests.get(server.health_url, timeout=2.0).status_code == 200
        log = server.log_path.read_text(encoding="utf-8")
        assert "OLD RUN" not in log
        assert "server is listening" in log
        assert "server is listening" in server.log_tail()
        server.check_running()  # running: no error

    assert not alive(server.pid)
    assert server.process is not None
    assert server.process.returncode is not None
    server.stop()  # a second stop is harmless
    server.stop()
    assert not alive(server.pid)


def test_startup_is_timed_from_launch_to_the_first_ready_answer(
    tmp_path: Path, leftovers: list[int]
) -> None:
    """A server that loads for 1 s before it listens is ready no sooner than 1 s after its
    launch (the poll every 0.2 s and the interpreter's start add a little)."""
    loading = "import time\ntime.sleep(1.0)\n" + HEALTH_SERVER
    server = managed(tmp_path, loading, "200")
    assert server.ready_s is None
    with server:
        assert server.pid is not None
        leftovers.append(server.pid)
        assert server.ready_s is not None
        assert 1.0 <= server.ready_s < 8.0


def test_stop_all_servers_stops_a_server_never_stopped(
    tmp_path: Path, leftovers: list[int]
) -> None:
    server = managed(tmp_path, HEALTH_SERVER, "200")
    server.start()
    assert server.pid is not None
    leftovers.append(server.pid)
    server.wait_ready()
    assert alive(server.pid)

    stop_all_servers()

    assert not alive(server.pid)
    assert server.process is not None
    assert server.process.returncode is not None
    stop_all_servers()  # nothing left to stop: harmless


def test_log_tail_without_a_log(tmp_path: Path) -> None:
    server = managed(tmp_path, HEALTH_SERVER, "200")
    assert server.log_tail() == "(no log)"
    assert server.pid is None


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


# --- progress while loading ------------------------------------------------------------------

# Logs a loading line every 0.1 s and listens on argv[1] once argv[2] seconds have passed.
SLOW_LOADER = """
import sys
import threading
import time

PORT, READY_AFTER = sys.argv[1], float(sys.argv[2])
started = time.monotonic()
shard = 0
while time.monotonic() - started < READY_AFTER:
    shard += 1
    print(f"Loading weights: shard {shard}", flush=True)
    time.sleep(0.1)
sys.argv = [sys.argv[0], PORT, "200"]
""" + HEALTH_SERVER

PROGRESS_LINE = re.compile(
    r"waiting for stub-engine on :(\d+) - (\d+) s, last log: Loading weights: shard \d+$"
)


@pytest.fixture
def progress() -> Iterator[list[str]]:
    lines: list[str] = []
    set_progress_reporter(lines.append)
    yield lines
    set_progress_reporter(None)


def test_progress_lines_while_loading(
    tmp_path: Path, leftovers: list[int], progress: list[str]
) -> None:
    server = managed(tmp_path, SLOW_LOADER, "1.5", progress_interval_s=0.3)
    started = time.monotonic()
    with server:
        elapsed = time.monotonic() - started
        assert server.pid is not None
        leftovers.append(server.pid)

    assert progress, "no progress line while the server loaded"
    # One line per interval at most (a generous bound: the CPUs are shared).
    assert len(progress) <= elapsed / 0.3 + 1
    port = server.health_url.split(":")[2].split("/")[0]
    seconds = []
    for line in progress:
        match = PROGRESS_LINE.match(line)
        assert match, line
        assert match.group(1) == port
        seconds.append(int(match.group(2)))
    assert seconds == sorted(seconds)
    assert seconds[-1] <= elapsed + 1


def test_progress_shows_a_long_log_line_shortened(
    tmp_path: Path, leftovers: list[int], progress: list[str]
) -> None:
    server = managed(
        tmp_path,
        """
        import time
        print("INFO " + "x" * 500, flush=True)
        time.sleep(60)
        """,
        ready_timeout_s=1.5,
        progress_interval_s=0.2,
    )
    with pytest.raises(ServerStartError, match="not ready"), server:
        pytest.fail("the server cannot be ready")
    assert server.pid is not None
    leftovers.append(server.pid)

    assert progress
    last_log = progress[-1].split("last log: ", 1)[1]
    assert last_log.startswith("INFO xxx")
    assert last_log.endswith("...")
    assert len(last_log) <= 80


def test_progress_before_the_first_log_line(
    tmp_path: Path, leftovers: list[int], progress: list[str]
) -> None:
    server = managed(tmp_path, "import time\ntime.sleep(60)\n", ready_timeout_s=1.0,
                     progress_interval_s=0.2)
    with pytest.raises(ServerStartError), server:
        pytest.fail("the server cannot be ready")
    assert server.pid is not None
    leftovers.append(server.pid)
    assert progress
    assert progress[-1].endswith("last log: (nothing yet)")


def test_no_reporter_no_progress(tmp_path: Path, leftovers: list[int]) -> None:
    set_progress_reporter(None)
    server = managed(tmp_path, SLOW_LOADER, "0.5", progress_interval_s=0.1)
    with server:  # reporting to nobody is fine
        assert server.pid is not None
        leftovers.append(server.pid)


# --- what counts as out of memory ----------------------------------------------------------


def logged(tmp_path: Path, text: str, *patterns: str) -> ManagedServer:
    server = managed(tmp_path, HEALTH_SERVER, oom_patterns=patterns)
    server.log_path.parent.mkdir(parents=True, exist_ok=True)
    server.log_path.write_text(text, encoding="utf-8")
    return server


def test_default_patterns_are_combined_with_the_engines(tmp_path: Path) -> None:
    engine = ("KV cache is full", "CUDA out of memory")
    server = managed(tmp_path, HEALTH_SERVER, oom_patterns=engine)
    assert server.oom_patterns[0] == "KV cache is full"
    assert set(server.oom_patterns) == {"KV cache is full", *DEFAULT_OOM_PATTERNS}
    assert len(server.oom_patterns) == len(set(server.oom_patterns))


@pytest.mark.parametrize(
    "line",
    [
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "RuntimeError: cuda OUT OF MEMORY",
        "torch.cuda.OutOfMemoryError: Allocation on device",
        "ValueError: No available memory for the cache blocks. Try increasing "
        "`gpu_memory_utilization` when initializing the engine.",
        "Error: model requires more system memory (9.1 GiB) than is available (4.0 GiB)",
        "ggml_cuda_host_malloc: cudaMalloc failed: out of memory",
    ],
)
def test_generic_oom_lines_are_recognised(tmp_path: Path, line: str) -> None:
    server = logged(tmp_path, f"INFO starting\n\x1b[31m{line}\x1b[0m\nINFO shutting down\n")
    assert server.oom_line() == line


def test_the_first_oom_line_is_the_one_reported(tmp_path: Path) -> None:
    server = logged(
        tmp_path,
        "alloc: failed to allocate CUDA0 buffer of size 8 GiB\n"
        "torch.OutOfMemoryError: CUDA out of memory\n",
        "failed to allocate CUDA",
    )
    assert server.oom_line() == "alloc: failed to allocate CUDA0 buffer of size 8 GiB"


def test_no_oom_line(tmp_path: Path) -> None:
    server = logged(tmp_path, "error loading model: unknown architecture 'foo'\n", "oom")
    assert server.oom_line() is None
    server.log_path.unlink()
    assert server.oom_line() is None  # no log at all


def test_system_memory_is_not_called_gpu_memory(tmp_path: Path, leftovers: list[int]) -> None:
    line = "Error: model requires more system memory (9.1 GiB) than is available (4.0 GiB)"
    server = managed(tmp_path, f"import sys\nprint({line!r}, flush=True)\nsys.exit(1)\n")
    with pytest.raises(ServerStartError) as failure, server:
        pytest.fail("the server cannot be ready")
    assert server.pid is not None
    leftovers.append(server.pid)
    assert str(failure.value).startswith(f"stub-engine ran out of memory: {line}\n")

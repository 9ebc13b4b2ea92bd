"""ManagedServer with real child processes: start, readiness, the log, and teardown for sure.

Every program here is a few lines of Python written to tmp_path and run with sys.executable.
The ``leftovers`` fixture fails a test that leaves any process behind (and kills it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from pytest_llmperf.server import ManagedServer, ServerStartError, free_port, stop_all_servers

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

# Ignores SIGTERM and forks a worker (same process group) that sleeps forever; the worker's
# pid goes to argv[3] before the health server starts.
STUBBORN_SERVER = (
    """
import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker = os.fork()
if worker == 0:
    while True:
        time.sleep(60)
with open(sys.argv[3] + ".tmp", "w") as out:
    out.write(str(worker))
os.replace(sys.argv[3] + ".tmp", sys.argv[3])
"""
    + HEALTH_SERVER
)


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
    )


# --- failures to start -----------------------------------------------------------------------


def test_program_that_exits_at_once(tmp_path: Path, leftovers: list[int]) -> None:
    server = managed(
        tmp_path,
        """
        import sys
        print("llama_model_load: error loading model: tensor 'blk.0.attn_q.weight' missing",
              flush=True)
        sys.exit(3)
        """,
    )
    with pytest.raises(ServerStartError) as failure, server:
        pytest.fail("the server cannot be ready")
    assert server.pid is not None
    leftovers.append(server.pid)

    message = str(failure.value)
    assert "stub-engine exited with code 3" in message
    assert "error loading model: tensor 'blk.0.attn_q.weight' missing" in message
    assert str(server.log_path) in message
    assert server.process is not None
    assert server.process.returncode == 3


def test_out_of_memory_line_reaches_the_error(tmp_path: Path, leftovers: list[int]) -> None:
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    server = managed(
        tmp_path,
        f"""
        import sys
        print("loading model weights", flush=True)
        print({oom!r}, flush=True)
        sys.exit(1)
        """,
    )
    with pytest.raises(ServerStartError, match="exited with code 1") as failure, server:
        pytest.fail("the server cannot be ready")
    assert server.pid is not None
    leftovers.append(server.pid)

    assert oom in str(failure.value)
    assert "loading model weights" in str(failure.value)


@pytest.mark.parametrize(
    "source",
    [
        """
        import time
        print("loading model", flush=True)
        time.sleep(60)
        """,
        HEALTH_SERVER,  # answering /health with 503, as llama-server does while loading
    ],
    ids=["listens-on-nothing", "health-503"],
)
def test_program_that_never_becomes_ready(
    tmp_path: Path, leftovers: list[int], source: str
) -> None:
    server = managed(tmp_path, source, "503", ready_timeout_s=1.5)
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="not ready") as failure, server:
        pytest.fail("the server cannot be ready")
    elapsed = time.monotonic() - started
    assert server.pid is not None
    leftovers.append(server.pid)

    assert "within 1.5 s" in str(failure.value)
    assert server.health_url in str(failure.value)
    assert str(server.log_path) in str(failure.value)
    assert 1.4 <= elapsed < 6.0
    # The failed start tore the process down.
    assert server.process is not None
    assert server.process.returncode is not None
    assert not alive(server.pid)


# --- teardown --------------------------------------------------------------------------------


def test_sigterm_ignoring_server_and_its_forked_worker_are_killed(
    tmp_path: Path, leftovers: list[int]
) -> None:
    worker_pid_file = tmp_path / "worker.pid"
    server = managed(tmp_path, STUBBORN_SERVER, "200", str(worker_pid_file), stop_grace_s=1.0)

    with server:
        assert server.pid is not None
        worker = int(worker_pid_file.read_text())
        leftovers.extend([server.pid, worker])
        assert alive(server.pid)
        assert alive(worker)
        assert os.getpgid(worker) == os.getpgid(server.pid) == server.pid
        started = time.monotonic()
    elapsed = time.monotonic() - started

    assert not alive(server.pid)
    assert not alive(worker)
    assert server.process is not None
    assert server.process.returncode == -9  # SIGTERM was ignored; SIGKILL ended it
    assert 0.9 <= elapsed < 5.0  # the grace period was waited out, then no more


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

    assert not alive(server.pid)
    assert server.process is not None
    assert server.process.returncode is not None
    server.stop()  # a second stop is harmless
    server.stop()
    assert not alive(server.pid)


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

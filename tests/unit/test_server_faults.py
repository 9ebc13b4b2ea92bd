"""Server faults with real processes: each test ends with proof that the process group is gone.

The engine is ``tests/fakes/fake_engine.py``, run with sys.executable in its own session (as
ManagedServer runs every engine).  "Gone" means ``os.killpg(pgid, 0)`` raises
ProcessLookupError, so no member of the group is left, not even a zombie, and that no pid the
test saw (the engine, the worker it forked, any new child of this process) is alive.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pytest_llmperf.engines.lifecycle import (
    ManagedServer,
    ServerExited,
    ServerOutOfMemory,
    ServerStartError,
    free_port,
    stop_all_servers,
)

FAKE_ENGINE = Path(__file__).resolve().parents[1] / "fakes" / "fake_engine.py"
VLLM_OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
    "total capacity of 79.10 GiB of which 1.02 GiB is free."
)


def gone(pid: int, pgid: int) -> bool:
    """Neither running nor a zombie in ``pgid`` (a reused pid in another group is gone too)."""
    try:
        return os.getpgid(pid) != pgid
    except ProcessLookupError:
        return True


def assert_group_gone(pgid: int, *pids: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert [pid for pid in (pgid, *pids) if not gone(pid, pgid)] == []


@pytest.fixture
def children() -> Iterator[None]:
    """Fails a test that leaves a new child process of ours running (and kills it)."""
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    yield
    stop_all_servers()
    left = []
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.pid not in before and child.status() != psutil.STATUS_ZOMBIE:
                left.append(child.pid)
                child.kill()
    assert left == [], f"processes left running: {left}"


def fake(
    tmp_path: Path,
    *args: str,
    ready_timeout_s: float = 15.0,
    stop_grace_s: float = 1.0,
    oom_patterns: tuple[str, ...] = (),
) -> ManagedServer:
    port = free_port()
    return ManagedServer(
        "stub-engine",
        [sys.executable, str(FAKE_ENGINE), str(port), *args],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=tmp_path / "logs" / "stub-engine.log",
        ready_timeout_s=ready_timeout_s,
        stop_grace_s=stop_grace_s,
        oom_patterns=oom_patterns,
    )


def fail_to_start(server: ManagedServer) -> ServerStartError:
    with pytest.raises(ServerStartError) as failure, server:
        pytest.fail("the server cannot be ready")
    return failure.value


def worker_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 15
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the engine never forked its worker"
        time.sleep(0.05)
    return int(pid_file.read_text())


def test_exits_at_once(tmp_path: Path, children: None) -> None:
    server = fake(tmp_path, "--say", "llama_model_load: error loading model: unknown arch",
                  "--exit", "3")
    error = fail_to_start(server)

    assert type(error) is ServerStartError
    message = str(error)
    assert "stub-engine exited with code 3 before it was ready" in message
    assert "    llama_model_load: error loading model: unknown arch" in message  # the log tail
    assert f"full log: {server.log_path}" in message
    assert server.process is not None
    assert server.process.returncode == 3
    assert server.pid is not None
    assert_group_gone(server.pid)


def test_prints_out_of_memory_and_exits(tmp_path: Path, children: None) -> None:
    server = fake(tmp_path, "--say", "INFO Loading weights took 12.3 s", "--say", "Traceback:",
                  "--say", VLLM_OOM, "--say", "RuntimeError: Engine core initialization failed",
                  "--exit", "1")
    error = fail_to_start(server)

    assert isinstance(error, ServerOutOfMemory)
    message = str(error)
    assert message.startswith(f"stub-engine ran out of GPU memory: {VLLM_OOM}\n")
    assert error.line == VLLM_OOM
    assert pickle.loads(pickle.dumps(error)).line == VLLM_OOM  # survives pytest-xdist
    assert "exited with code 1 before it was ready" in message
    assert f"full log: {server.log_path}" in message
    for hint in ("--llmperf-max-model-len", "--llmperf-max-num-seqs", "--gpus", "--llmperf-tp",
                 "--llmperf-gpu-memory-utilization"):
        assert hint in message
    assert server.pid is not None
    assert_group_gone(server.pid)


def test_engine_pattern_matches_case_insensitively(tmp_path: Path, children: None) -> None:
    line = ("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB on device 0: "
            "CUDAMALLOC FAILED: out of memory")
    server = fake(tmp_path, "--say", "load_tensors: loading model tensors", "--say", line,
                  "--exit", "1", oom_patterns=("cudaMalloc failed: out of memory",))
    error = fail_to_start(server)

    assert isinstance(error, ServerOutOfMemory)
    assert str(error).startswith(f"stub-engine ran out of GPU memory: {line}\n")
    assert server.pid is not None
    assert_group_gone(server.pid)


@pytest.mark.parametrize("listen", ["no-listen", "health-503"])
def test_never_becomes_ready(tmp_path: Path, children: None, listen: str) -> None:
    args = ["--no-listen"] if listen == "no-listen" else ["--status", "503"]
    pid_file = tmp_path / "worker.pid"
    server = fake(tmp_path, "--say", "loading model", "--fork-worker", str(pid_file), *args,
                  ready_timeout_s=2.0)
    started = time.monotonic()
    error = fail_to_start(server)
    elapsed = time.monotonic() - started

    assert type(error) is ServerStartError
    message = str(error)
    assert f"stub-engine was not ready at {server.health_url} within 2 s" in message
    assert "    loading model" in message
    assert f"full log: {server.log_path}" in message
    assert 1.9 <= elapsed < 30
    assert server.pid is not None
    assert_group_gone(server.pid, worker_pid(pid_file))


def test_not_ready_in_time_after_out_of_memory(tmp_path: Path, children: None) -> None:
    """An engine whose worker died of OOM while the API process hangs on: still said plainly."""
    server = fake(tmp_path, "--say", VLLM_OOM, "--no-listen", ready_timeout_s=1.5)
    error = fail_to_start(server)

    assert isinstance(error, ServerOutOfMemory)
    assert str(error).startswith(f"stub-engine ran out of GPU memory: {VLLM_OOM}\n")
    assert "was not ready" in str(error)
    assert "within 1.5 s" in str(error)
    assert server.pid is not None
    assert_group_gone(server.pid)


def test_ignores_sigterm_and_so_does_its_worker(tmp_path: Path, children: None) -> None:
    pid_file = tmp_path / "worker.pid"
    server = fake(tmp_path, "--ignore-sigterm", "--fork-worker", str(pid_file), stop_grace_s=1.0)

    with server:
        assert server.pid is not None
        worker = worker_pid(pid_file)
        assert os.getpgid(worker) == os.getpgid(server.pid) == server.pid
        assert psutil.Process(worker).ppid() == server.pid
        started = time.monotonic()
    elapsed = time.monotonic() - started

    assert server.process is not None
    assert server.process.returncode == -9  # SIGTERM was ignored; SIGKILL ended it
    assert 0.9 <= elapsed < 15  # the grace period was waited out, then SIGKILL
    assert_group_gone(server.pid, worker)


def test_worker_ignoring_sigterm_gets_the_grace_too(tmp_path: Path, children: None) -> None:
    """The engine exits on SIGTERM at once; its stubborn worker is killed after the grace."""
    pid_file = tmp_path / "worker.pid"
    with server_with_sigterm_ignoring_worker(tmp_path, pid_file) as server:
        assert server.pid is not None
        worker = worker_pid(pid_file)
        started = time.monotonic()
    elapsed = time.monotonic() - started

    assert server.process is not None
    assert server.process.returncode == -15  # the engine itself went on SIGTERM
    assert 0.9 <= elapsed < 15
    assert_group_gone(server.pid, worker)


def server_with_sigterm_ignoring_worker(tmp_path: Path, pid_file: Path) -> ManagedServer:
    # A worker that ignores SIGTERM, forked by an engine that does not: the engine must ignore
    # SIGTERM while it forks, then restore the default for itself.
    wrapper = tmp_path / "engine.py"
    wrapper.write_text(
        "import os, runpy, signal, sys\n"
        "real_fork = os.fork\n"
        "def fork():\n"
        "    pid = real_fork()\n"
        "    if pid:\n"
        "        signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
        "    return pid\n"
        "os.fork = fork\n"
        f"sys.argv = [{str(FAKE_ENGINE)!r}, *sys.argv[1:]]\n"
        f"runpy.run_path({str(FAKE_ENGINE)!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    port = free_port()
    return ManagedServer(
        "stub-engine",
        [sys.executable, str(wrapper), str(port), "--ignore-sigterm", "--fork-worker",
         str(pid_file)],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=tmp_path / "logs" / "stub-engine.log",
        ready_timeout_s=15.0,
        stop_grace_s=1.0,
    )


@pytest.mark.parametrize("crash", ["segfault", "oom"])
def test_ready_then_dies(tmp_path: Path, children: None, crash: str) -> None:
    line = "Segmentation fault in worker" if crash == "segfault" else VLLM_OOM
    pid_file = tmp_path / "worker.pid"
    server = fake(tmp_path, "--fork-worker", str(pid_file), "--die-after", "0.5", "7",
                  "--crash-line", line)

    with server:
        assert server.process is not None
        assert server.pid is not None
        worker = worker_pid(pid_file)
        server.process.wait(timeout=30)
        # The engine is gone, its worker is not: an orphan that still holds the group.
        assert not gone(worker, server.pid)
        expected = ServerExited if crash == "segfault" else ServerOutOfMemory
        with pytest.raises(expected) as died:
            server.check_running()

    if crash == "segfault":
        assert "stub-engine exited with code 7 after it was ready" in str(died.value)
        assert f"    {line}" in str(died.value)
    else:
        assert str(died.value).startswith(f"stub-engine ran out of GPU memory: {VLLM_OOM}\n")
        assert "exited with code 7 after it was ready" in str(died.value)
    assert f"full log: {server.log_path}" in str(died.value)
    assert server.process.returncode == 7
    assert_group_gone(server.pid, worker)
    server.stop()  # once more: harmless

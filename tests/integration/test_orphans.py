"""A SIGKILLed or SIGHUPed pytest-xdist worker leaves no engine process behind, of any engine.

The engine is the fake one (``tests/fakes/fake_engine.py``: a worker in its process group and a
detached helper in a session of its own), launched through ``ManagedServer`` by a test that then
waits; the worker running that test is SIGKILLed.  Nothing that worker started may stay
running: not the engine's guard, not the engine, not its worker, not the detached helper.
SIGHUP is what a dropped ssh session sends, to the whole session (the controller and its
workers, ``session-SIGHUP``) or to one worker: the worker ends its engines and dies of it.
(The same with the embedded llama.cpp engine is test_cleanup_and_secrets.py's.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.fakes.signals import default_signals
from tests.unit.test_lifecycle_guard import FAKE_ENGINE, kill_all, still_running, wait_for_file

pytestmark = pytest.mark.integration

HOLDING_TEST = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from pytest_llmperf.engines.lifecycle import ManagedServer, free_port

    HERE = Path(__file__).resolve().parent


    def test_holds_an_engine():
        port = free_port()
        argv = [sys.executable, {fake!r}, str(port), "--fork-worker", str(HERE / "worker.pid"),
                "--detach-helper", str(HERE / "helper.pid")]
        with ManagedServer("stub-engine", argv, health_url=f"http://127.0.0.1:{{port}}/health",
                           log_path=HERE / "engine.log", stop_grace_s=1.0) as server:
            while not (HERE / "helper.pid").exists():
                time.sleep(0.05)
            (HERE / "pids.partial").write_text(json.dumps(
                {{"worker_process": os.getpid(), "engine": server.pid}}))
            os.replace(HERE / "pids.partial", HERE / "pids.json")
            time.sleep(600)
""")


@pytest.mark.parametrize(("whom", "sig"), [("worker", signal.SIGKILL), ("worker", signal.SIGHUP),
                                           ("session", signal.SIGHUP)],
                         ids=["worker-SIGKILL", "worker-SIGHUP", "session-SIGHUP"])
def test_a_killed_xdist_worker_leaves_no_engine_process(tmp_path: Path, whom: str,
                                                        sig: signal.Signals) -> None:
    (tmp_path / "test_holding.py").write_text(HOLDING_TEST.format(fake=str(FAKE_ENGINE)))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    controller = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "1", "--max-worker-restart=0",
         "-p", "no:cacheprovider", "test_holding.py"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=default_signals)
    tree: list[int] = []
    try:
        pids = json.loads(wait_for_file(tmp_path / "pids.json", within_s=120))
        worker = pids["worker_process"]
        tree = [p.pid for p in psutil.Process(worker).children(recursive=True)]
        helper = int((tmp_path / "helper.pid").read_text())
        assert pids["engine"] in tree and helper in tree, (pids, helper, tree)
        if whom == "worker":
            os.kill(worker, sig)
        else:  # a dropped ssh session: its whole process group, the engine's guard apart
            assert os.getpgid(worker) == controller.pid
            os.killpg(controller.pid, sig)
        left = still_running([*tree, worker])
        assert left == [], f"still running after the {whom} got {sig.name}: {left} of {tree}"
        assert controller.wait(timeout=120) != 0  # the worker crashed: the run failed
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
        kill_all(tree)

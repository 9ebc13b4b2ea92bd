"""The port race: a port picked free before the engine binds it may be taken in between.

A health answer counts only when the socket listening on the port is our engine's; another
process's 200 is never taken for the engine's readiness.  With a way to build the command for
another port (``relaunch``), the engine is started again there; without one the error names
the port and who holds it.
"""

from __future__ import annotations

import http.server
import os
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from pytest_llmperf.engines import launched, ports
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.launched import LaunchedBackend, LaunchSpec
from pytest_llmperf.engines.lifecycle import ManagedServer, ServerStartError, free_port
from pytest_llmperf.settings.groups import ServerSettings
from pytest_llmperf.settings.resolve import resolve_settings
from tests.unit.test_lifecycle_guard import FAKE_ENGINE


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def foreign_server() -> Iterator[int]:
    """Another process's server (this test's), answering 200 to every GET, on a free port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port taken by a socket that listens and never answers (one of the client's own, say)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen(16)
        yield int(taken.getsockname()[1])


def argv(port: int, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE_ENGINE), str(port), *extra]


def server_on(tmp_path: Path, port: int, *extra: str, relaunch: bool = False,
              ready_timeout_s: float = 30.0) -> ManagedServer:
    def command(new_port: int) -> tuple[Sequence[str], None]:
        return argv(new_port, *extra), None

    options = {"relaunch": command} if relaunch else {}
    return ManagedServer("stub-engine", argv(port, *extra),
                         health_url=f"http://127.0.0.1:{port}/health",
                         log_path=tmp_path / "stub-engine.log", ready_timeout_s=ready_timeout_s,
                         stop_grace_s=1.0, **options)  # type: ignore[arg-type]


def test_another_processs_200_is_not_the_engines_readiness(
        tmp_path: Path, foreign_server: int) -> None:
    server = server_on(tmp_path, foreign_server, "--no-listen", ready_timeout_s=20.0)
    with pytest.raises(ServerStartError) as failure, server:
        pytest.fail(f"took the answer of the server already on :{foreign_server} for the engine's")
    message = str(failure.value)
    assert f"port {foreign_server}" in message
    assert "not stub-engine's" in message
    assert f"pid {os.getpid()}" in message  # who holds it, as far as we may see


def test_a_port_taken_by_a_foreign_server_moves_the_engine(
        tmp_path: Path, foreign_server: int) -> None:
    with server_on(tmp_path, foreign_server, relaunch=True) as server:
        assert server.port is not None and server.port != foreign_server
        assert server.health_url == f"http://127.0.0.1:{server.port}/health"
        assert requests.get(server.health_url, timeout=5).status_code == 200
        assert server.process is not None
        assert ports.listening_pids(server.process.tree(), server.port)
    log = server.log_path.read_text()
    assert f"port {foreign_server} is taken" in log
    assert f"on port {server.port}" in log


def test_a_port_stolen_before_the_engine_binds_it_moves_the_engine(
        tmp_path: Path, silent_listener: int) -> None:
    with server_on(tmp_path, silent_listener, relaunch=True) as server:
        assert server.port is not None and server.port != silent_listener
        assert requests.get(server.health_url, timeout=5).status_code == 200


def test_a_stolen_port_without_relaunch_is_named(tmp_path: Path, silent_listener: int) -> None:
    with pytest.raises(ServerStartError) as failure, server_on(tmp_path, silent_listener):
        pytest.fail("the engine cannot bind its port")
    assert f"port {silent_listener} is in use by another process" in str(failure.value)


def test_free_port_never_hands_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    given = iter([41001, 41001, 41001, 41002])

    class Probe:
        def __init__(self, *args: object) -> None:
            self.port = next(given)

        def __enter__(self) -> Probe:
            return self

        def __exit__(self, *args: object) -> None:
            pass

        def bind(self, address: object) -> None:
            pass

        def getsockname(self) -> tuple[str, int]:
            return "127.0.0.1", self.port

    monkeypatch.setattr(ports.socket, "socket", Probe)
    assert [free_port(), free_port()] == [41001, 41002]


class _Fake(LaunchedBackend):
    """An engine launched as the real ones are (LaunchedBackend.serve), played by the fake."""

    name = "fake"
    uses_gpus = False
    metrics_path = None

    def missing(self, settings: ServerSettings) -> str | None:
        return None

    def launch(self, settings: ServerSettings, model: ModelEntry, source: ModelSource,
               port: int, tp: int) -> LaunchSpec:
        return LaunchSpec(tuple(argv(port)))


def test_a_launched_engine_is_measured_on_the_port_it_moved_to(
        tmp_path: Path, foreign_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launched, "free_port", lambda: foreign_server)  # taken in between
    settings = resolve_settings({}, {}, {}, tmp_path).server
    entry = ModelEntry("custom", {"hf": ModelSource("hf", "org/model", None)}, tp=1)
    with _Fake().serve(settings, entry, tmp_path) as served:
        assert served.endpoint is not None
        port = urlsplit(served.endpoint.base_url).port
        assert port is not None and port != foreign_server
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200

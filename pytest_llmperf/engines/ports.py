"""Ports for launched engines, and whose a listening port is.

A port is picked free minutes before the engine binds it (it loads its model first), so
another process may take it in between: a sibling pytest-xdist worker's engine, or one of the
client's own outgoing connections, which get their ports from the same range.  So a health
answer on the port counts only when the socket listening there belongs to our engine's tree
(:func:`listening_pids`); otherwise the engine is started again on another port.
"""

from __future__ import annotations

import collections
import contextlib
import re
import socket
from collections.abc import Iterable

import psutil

__all__ = ["ADDRESS_IN_USE", "describe_listener", "free_port", "listening_pids"]

# Log text of an engine that could not bind its port (Python, uvicorn, llama.cpp, Go, Rust).
ADDRESS_IN_USE = re.compile(
    r"address already in use|eaddrinuse|couldn't bind|could not bind|only one usage of each "
    r"socket address", re.IGNORECASE)

_GIVEN: collections.deque[int] = collections.deque(maxlen=256)  # handed out by this process


def free_port() -> int:
    """A loopback port nothing listens on now, and not one this process has handed out
    already (an engine still loading has not bound the last one yet)."""
    port = 0
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _GIVEN:
            break
    _GIVEN.append(port)
    return port


def _listens(process: psutil.Process, port: int) -> bool:
    connections = getattr(process, "net_connections", None) or process.connections
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
               for c in connections(kind="tcp"))


def listening_pids(pids: Iterable[int], port: int) -> list[int]:
    """Those of ``pids`` with a TCP socket listening on ``port``."""
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error, OSError):
            if _listens(psutil.Process(pid), port):
                found.append(pid)
    return found


def describe_listener(port: int) -> str:
    """Who listens on ``port``, as far as this process may see: ``pid 123 (python3 -m
    http.server 8000)``, or a plain "another process"."""
    with contextlib.suppress(psutil.Error, OSError):
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr \
                    and connection.laddr.port == port and connection.pid:
                with contextlib.suppress(psutil.Error):
                    command = " ".join(psutil.Process(connection.pid).cmdline())[:120]
                    return f"pid {connection.pid} ({command})"
                return f"pid {connection.pid}"
    return "another process"

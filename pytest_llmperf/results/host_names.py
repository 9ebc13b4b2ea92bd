"""Test ids that name the host that ran them, in a session over several hosts."""

from __future__ import annotations

__all__ = ["with_host", "without_host"]


def with_host(name: str, host: str | None) -> str:
    """A test id or node id that names the host that ran it: ``test_x[a-b]`` on host ``gpu-a``
    is ``test_x[a-b@gpu-a]``, ``test_x`` is ``test_x[@gpu-a]``; unchanged for no host."""
    if not host:
        return name
    if name.endswith("]") and "[" in name:
        return f"{name[:-1]}@{host}]"
    return f"{name}[@{host}]"


def without_host(name: str, host: str | None) -> str:
    """:func:`with_host` undone: the test id as collected."""
    if not host:
        return name
    if name.endswith(f"[@{host}]"):
        return name[:-len(host) - 3]
    if name.endswith(f"@{host}]"):
        return name[:-len(host) - 2] + "]"
    return name

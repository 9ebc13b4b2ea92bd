"""Replicas of one deployment behind one suite: several ``--base-url`` URLs, no gateway.

A :class:`ReplicaClient` spreads the requests of a window over one client per replica:
``round-robin`` sends each next request to the next replica in turn; ``least-busy`` to the
replica with the fewest requests in flight (the next in turn among equals), as a router that
balances by open requests would.  Each record names the replica that served it
(``RequestRecord.replica``, its URL), so the report can split every figure per replica
(results.replicas).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from types import TracebackType

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import StreamingClient
from pytest_llmperf.results.records import RequestRecord

__all__ = ["POLICIES", "ReplicaClient"]

POLICIES = ("round-robin", "least-busy")


class ReplicaClient:
    """Sends each request to one of ``clients`` (one per replica) by ``policy``."""

    def __init__(self, clients: Sequence[StreamingClient], *,
                 policy: str = "round-robin") -> None:
        if not clients:
            raise ValueError("a replica client needs at least one replica")
        if policy not in POLICIES:
            raise ValueError(f"replica policy must be one of {', '.join(POLICIES)}, "
                             f"got {policy!r}")
        self.clients = list(clients)
        self.policy = policy
        self.in_flight = [0] * len(self.clients)
        self._next = 0
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> ReplicaClient:
        for client in self.clients:
            await self._stack.enter_async_context(client)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()

    def _choose(self) -> int:
        count = len(self.clients)
        order = [(self._next + step) % count for step in range(count)]
        chosen = order[0]
        if self.policy == "least-busy":  # fewest in flight; the next in turn among equals
            chosen = min(order, key=lambda i: self.in_flight[i])
        self._next = (chosen + 1) % count
        return chosen

    async def send(self, request_id: int, prompt: Prompt | str) -> RequestRecord:
        index = self._choose()
        self.in_flight[index] += 1
        try:
            record = await self.clients[index].send(request_id, prompt)
        finally:
            self.in_flight[index] -= 1
        return dataclasses.replace(record, replica=self.clients[index].endpoint.base_url)

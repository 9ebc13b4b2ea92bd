"""The fast measuring-instrument stub (tests/fakes/fast_stub.py) keeps its promises: the delays
it injects, stamps on the client's clock, keep-alive, and a client that hangs up mid-answer."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.runner import run_load
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.results.records import RequestRecord
from tests.fakes.stub_process import FAST_STUB, running_stub

FIRST_MS, TOKEN_MS = 20.0, 5.0


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def stub(request: pytest.FixtureRequest) -> Iterator[str]:
    args = ["--first-ms", str(FIRST_MS), "--token-ms", str(TOKEN_MS)]
    if request.param == "uvloop":
        args.append("--uvloop")
    with running_stub(*args, script=FAST_STUB) as url:
        yield url


def _root(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _chat(tokens: int) -> bytes:
    return json.dumps({"model": "stub", "max_tokens": tokens, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_our_client_reads_the_injected_delays_and_the_stamps(stub: str, api: str) -> None:
    served = ServedModel("openai", "stub", Endpoint(stub, "stub", api=api),  # type: ignore[arg-type]
                         engine="stub")
    result = run_load(served, BuiltinPrompts(), users=4, requests=8, max_tokens=8)
    assert len(result.run.records) == 8
    for record in result.run.records:
        assert record.ok and record.output_tokens == 8
        stamps = record.server_timings
        received, first, last = (stamps["stub_received_ns"], stamps["stub_first_sent_ns"],
                                 stamps["stub_last_sent_ns"])
        # One clock: the stub read the request after we sent it, and we read its first token
        # after it wrote it.
        assert record.send_ns <= received < first <= last < record.end_ns
        assert record.chunk_ns[0] >= first
        assert FIRST_MS <= (first - received) / 1e6 < FIRST_MS + 40
        assert TOKEN_MS * 0.9 <= (last - first) / 1e6 / 7 < TOKEN_MS * 2


def test_one_connection_carries_answers_one_after_another(stub: str) -> None:
    connection = http.client.HTTPConnection(*_root(stub), timeout=10)
    peers = []
    for _ in range(2):
        connection.request("POST", "/v1/chat/completions", body=_chat(3),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200 and body.count('"content"') == 3
        assert body.rstrip().endswith("data: [DONE]")
        assert connection.sock is not None
        peers.append(connection.sock.getsockname())
    assert peers[0] == peers[1]
    connection.close()


def test_the_stamps_list_every_answer_and_reset_empties_it(stub: str) -> None:
    root = stub.removesuffix("/v1")
    requests.post(f"{root}/stamps/reset", timeout=5).raise_for_status()
    for tokens in (2, 5):
        assert requests.post(f"{stub}/chat/completions", data=_chat(tokens),
                             timeout=5).status_code == 200
    stamps = requests.get(f"{root}/stamps", timeout=5).json()
    assert [row[3] for row in stamps] == [2, 5]
    assert all(r < f <= last for r, f, last, _ in stamps)
    requests.post(f"{root}/stamps/reset", timeout=5).raise_for_status()
    assert requests.get(f"{root}/stamps", timeout=5).json() == []


def test_a_client_hanging_up_mid_answer_leaves_the_stub_serving(stub: str) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n")
    body = _chat(200)
    with socket.create_connection(_root(stub), timeout=5) as raw:
        raw.sendall(head % len(body) + body)
        assert b"200 OK" in raw.recv(4096)
    # The same request split over three writes, 50 ms apart: answered whole.
    with socket.create_connection(_root(stub), timeout=5) as raw:
        body = _chat(2)
        message = head % len(body) + body
        for piece in (message[:30], message[30:-10], message[-10:]):
            raw.sendall(piece)
            time.sleep(0.05)
        answer = b""
        while not answer.endswith(b"0\r\n\r\n"):
            chunk = raw.recv(65536)
            assert chunk, "the stub closed the connection before the answer ended"
            answer += chunk
    assert answer.count(b'"content"') == 2 and b"[DONE]" in answer


def test_an_unknown_path_is_404(stub: str) -> None:
    assert requests.get(f"{stub}/nothing", timeout=5).status_code == 404


def test_a_request_is_timed_from_when_it_was_written_not_built(stub: str) -> None:
    from pytest_llmperf.clients.openai import StreamingClient
    from pytest_llmperf.clients.transport import Connection, Origin

    class SlowToWrite(StreamingClient):
        async def _connection(self, origin: Origin) -> Connection:
            await asyncio.sleep(0.05)  # the client busy with other streams before the write
            return await super()._connection(origin)

    async def send() -> tuple[int, RequestRecord]:
        async with SlowToWrite(Endpoint(stub, "stub"), max_tokens=2) as client:
            began = time.perf_counter_ns()
            return began, await client.send(0, "hi")

    began, record = asyncio.run(send())
    assert record.ok
    assert record.send_ns - began >= 50_000_000  # the wait is not the server's
    assert 0 <= record.server_timings["stub_received_ns"] - record.send_ns < 20_000_000

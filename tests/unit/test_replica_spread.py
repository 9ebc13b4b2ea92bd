"""Several replicas behind one suite: --base-url takes a list (each URL checked, none twice, only
for --backend openai), requests are spread round-robin or to the least busy replica, each
record names its replica, and a window's figures split per replica with the much slower one
flagged."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType

import pytest

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.replicas import ReplicaClient
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.record_codec import run_from_json, run_to_json
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.replicas import replica_figures, slow_replicas
from pytest_llmperf.settings.groups import SettingError
from pytest_llmperf.settings.parsers import urls
from pytest_llmperf.settings.resolve import resolve_settings

MS = 1_000_000


@dataclass
class FakeEndpoint:
    base_url: str


class FakeReplica:
    """Answers after ``delay_s``; counts what it served and whether it was opened."""

    def __init__(self, url: str, delay_s: float = 0.0) -> None:
        self.endpoint = FakeEndpoint(url)
        self.delay_s = delay_s
        self.served: list[int] = []
        self.open = False

    async def __aenter__(self) -> FakeReplica:
        self.open = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.open = False

    async def send(self, request_id: int, prompt: Prompt | str) -> RequestRecord:
        self.served.append(request_id)
        await asyncio.sleep(self.delay_s)
        return RequestRecord(request_id, 0, (1,), 2, 1)


def spread(replicas: list[FakeReplica], policy: str, requests: int, *,
           at_once: bool) -> list[RequestRecord]:
    client = ReplicaClient(replicas, policy=policy)  # type: ignore[arg-type]

    async def run() -> list[RequestRecord]:
        async with client:
            assert all(r.open for r in replicas)
            if at_once:
                return list(await asyncio.gather(*(client.send(i, "hi")
                                                   for i in range(requests))))
            return [await client.send(i, "hi") for i in range(requests)]

    records = asyncio.run(run())
    assert not any(r.open for r in replicas)
    return records


def test_round_robin_takes_the_replicas_in_turn_and_records_which() -> None:
    replicas = [FakeReplica("http://a/v1"), FakeReplica("http://b/v1"), FakeReplica("http://c/v1")]
    records = spread(replicas, "round-robin", 9, at_once=False)
    assert [r.served for r in replicas] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert [r.replica for r in records[:3]] == ["http://a/v1", "http://b/v1", "http://c/v1"]


def test_least_busy_sends_more_to_the_replica_that_answers_sooner() -> None:
    fast, slow = FakeReplica("http://fast/v1", 0.01), FakeReplica("http://slow/v1", 0.2)
    client = ReplicaClient([fast, slow], policy="least-busy")  # type: ignore[list-item]

    async def run() -> None:
        async with client:
            tasks = []
            for i in range(20):  # one arrival every 20 ms
                tasks.append(asyncio.create_task(client.send(i, "hi")))
                await asyncio.sleep(0.02)
            await asyncio.gather(*tasks)

    asyncio.run(run())
    # The slow replica holds each request for 200 ms: it is busy whenever the fast one is free.
    assert len(fast.served) >= 15 and len(fast.served) + len(slow.served) == 20
    # Round-robin spreads the same arrivals evenly whatever the replicas do.
    even = [FakeReplica("http://fast/v1", 0.01), FakeReplica("http://slow/v1", 0.2)]
    spread(even, "round-robin", 20, at_once=True)
    assert [len(r.served) for r in even] == [10, 10]


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="round-robin, least-busy"):
        ReplicaClient([FakeReplica("http://a/v1")], policy="random")  # type: ignore[list-item]


def test_several_urls_are_parsed_each_and_never_twice() -> None:
    assert urls("http://a:8000/v1, http://b:8000/v1/") == "http://a:8000/v1,http://b:8000/v1"
    with pytest.raises(ValueError, match="'http://b:8000/v1\\?\\*\\*\\*': expected an http"):
        urls("http://a:8000/v1,http://b:8000/v1?key=secret")
    with pytest.raises(ValueError, match="given twice"):
        urls("http://a:8000/v1,http://a:8000/v1/")


def test_several_urls_are_for_the_openai_backend_only(tmp_path: object) -> None:
    with pytest.raises(SettingError, match="--backend openai"):
        resolve_settings({"backend": "vllm", "base_url": "http://a/v1,http://b/v1"}, {}, {},
                         tmp_path)  # type: ignore[arg-type]
    settings = resolve_settings({"backend": "openai", "base_url": "http://a/v1,http://b/v1"},
                                {}, {}, tmp_path)  # type: ignore[arg-type]
    assert settings.server.base_urls == ("http://a/v1", "http://b/v1")
    assert settings.server.replica_policy == "round-robin"


def answered(request_id: int, replica: str, ttft_ms: float) -> RequestRecord:
    send = request_id * 100 * MS
    first = send + round(ttft_ms * MS)
    return RequestRecord(request_id, send, (first, first + 10 * MS, first + 20 * MS),
                         first + 20 * MS, 3, replica=replica)


def test_figures_split_per_replica_and_the_much_slower_one_is_flagged() -> None:
    records = tuple(answered(i, f"http://r{i % 3}/v1", 200.0 if i % 3 == 2 else 50.0)
                    for i in range(12))
    run = LoadRun(records, 0, records[-1].end_ns, 3, 0)
    figures = replica_figures(run)
    assert [(f.url, f.requests, f.failed) for f in figures] == [
        ("http://r0/v1", 4, 0), ("http://r1/v1", 4, 0), ("http://r2/v1", 4, 0)]
    assert figures[2].medians["ttft_ms"] == pytest.approx(200.0)
    assert figures[0].medians["tpot_ms"] == pytest.approx(10.0)
    assert slow_replicas(figures) == [
        "replica http://r2/v1 is much slower: median TTFT 200 ms against 50 ms on the others "
        "(4.0x)"]
    # The record says where it went, in the stored file too.
    (read, *_) = run_from_json(Fields(run_to_json(run), "result.json")).records
    assert read.replica == "http://r0/v1"
    # One server: no split.
    single = LoadRun(tuple(answered(i, "http://r0/v1", 50.0) for i in range(4)), 0, 10**9, 1, 0)
    assert replica_figures(single) == ()

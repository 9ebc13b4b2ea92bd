"""The rerank client's request and its reading of answers (clients.rerank); the client over
HTTP against the measuring stub is in tests/integration/test_rerank_stub.py."""

from __future__ import annotations

import json

import pytest

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.clients.rerank import RerankClient, rerank_payload
from pytest_llmperf.settings.groups import SettingError
from pytest_llmperf.settings.resolve import resolve_settings

ENDPOINT = Endpoint("http://127.0.0.1:9/v1", "m", api="rerank")


def read(answer: object, documents: int = 3) -> tuple[int | None, str | None]:
    client = RerankClient(ENDPOINT, max_tokens=1, timeout_s=1.0)
    return client.read_answer(json.dumps(answer).encode(), documents)


def test_a_request_is_one_query_and_its_documents() -> None:
    prompt = Prompt("which is fast?", batch=("a fast car", "a slow boat"))
    assert rerank_payload("m", prompt) == {"model": "m", "query": "which is fast?",
                                           "documents": ["a fast car", "a slow boat"],
                                           "top_n": 2}
    assert ENDPOINT.url == "http://127.0.0.1:9/v1/rerank"
    with pytest.raises(ValueError, match="at least one document"):
        rerank_payload("m", Prompt("q"))


def test_a_good_answer_gives_the_server_s_prompt_tokens() -> None:
    results = [{"index": 2, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.5},
               {"index": 1, "relevance_score": -1.25}]
    assert read({"results": results, "usage": {"prompt_tokens": 42}}) == (42, None)
    assert read({"results": results, "usage": {"total_tokens": 40}}) == (40, None)  # Jina
    assert read({"results": results}) == (None, None)  # no usage: counted by nothing


@pytest.mark.parametrize(("answer", "why"), [
    ({"results": [{"index": 0, "relevance_score": 1}, {"index": 1, "relevance_score": 1}]},
     "the answer scores 2 of 3 documents"),
    ({"results": [{"index": i % 2, "relevance_score": 1} for i in range(3)]},
     "document 0 is scored twice"),
    ({"results": [{"index": 3, "relevance_score": 1}]}, "a result names document 3 of 3"),
    ({"results": [{"index": True, "relevance_score": 1}]}, "a result names document True of 3"),
    ({"results": [{"index": 0, "relevance_score": "high"}]},
     "document 0's relevance_score is 'high', not a number"),
    ({"data": []}, "the answer holds no 'results' list"),
])
def test_an_answer_that_does_not_score_every_document_once_is_malformed(
        answer: object, why: str) -> None:
    tokens, problem = read(answer)
    assert tokens is None and problem is not None and problem.startswith(why)


def test_an_answer_that_is_not_json_says_so() -> None:
    client = RerankClient(ENDPOINT, max_tokens=1, timeout_s=1.0)
    tokens, problem = client.read_answer(b"<html>bad gateway</html>", 3)
    assert tokens is None and problem is not None
    assert problem.startswith("the answer is not JSON") and "bad gateway" in problem


def test_rerank_is_refused_on_a_launched_engine_before_anything_starts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SettingError, match=r"--llmperf-endpoint \(command line\): rerank is "
                                           r"measured on a server the session attaches to"):
        resolve_settings({"endpoint": "rerank"}, {}, {}, tmp_path)
    settings = resolve_settings({"endpoint": "rerank", "backend": "openai",
                                 "base_url": "http://127.0.0.1:9/v1"}, {}, {}, tmp_path)
    assert settings.load.endpoint == "rerank" and settings.load.rerank_documents == 8

"""vLLM, SGLang, LMDeploy and TGI as the streaming client meets them, from recorded answers.

A local aiohttp server replays each engine's chat stream (``recorded/*_chat_stream.txt``, one
network write per SSE event, as the engines flush them), its error bodies and its version
endpoint.  The client is driven through the :class:`ServedModel` each adapter builds, so the
endpoint, the request fields the adapter adds and the version parsing are the adapter's own.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from pytest_llmperf.engines.base import ServedModel, get_backend
from pytest_llmperf.engines.catalog import builtin_catalog
from pytest_llmperf.engines.launched import LaunchedBackend
from pytest_llmperf.results.records import RequestRecord, TokenSource
from pytest_llmperf.settings.groups import ServerSettings
from pytest_llmperf.settings.resolve import resolve_settings

T = TypeVar("T")
RECORDED = Path(__file__).parent / "recorded"
ENGINES = ("vllm", "sglang", "lmdeploy", "tgi")
HF_ID = "Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4"
PROMPT = "What is the capital of France? Answer in one sentence."
MAX_TOKENS = 8
DELAY_S = 0.05  # pause between two scripted writes, so that each arrives in its own read
TEXT_EVENTS = 8  # every recorded stream carries 8 tokens, one event each


def sse(message: Mapping[str, Any] | str) -> bytes:
    data = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def recorded_stream(name: str) -> tuple[bytes, ...]:
    """A recorded stream, one entry per SSE event (each ends with its blank line)."""
    text = (RECORDED / f"{name}_chat_stream.txt").read_bytes()
    return tuple(event + b"\n\n" for event in text.split(b"\n\n") if event.strip())


# --- the stub server -------------------------------------------------------------------------


@dataclass
class Stub:
    """Answers chat requests with ``writes`` (status 200: one SSE event per write) or with
    ``status`` and their concatenation as a JSON body; serves ``gets`` as JSON documents."""

    writes: Sequence[bytes] = ()
    status: int = 200
    gets: Mapping[str, Any] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        if self.status != 200:
            return web.Response(status=self.status, body=b"".join(self.writes),
                                content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, data in enumerate(self.writes):
            if index:
                await asyncio.sleep(DELAY_S)
            await response.write(data)
        await response.write_eof()
        return response

    async def get(self, request: web.Request) -> web.StreamResponse:
        if request.path not in self.gets:
            return web.json_response({"detail": "Not Found"}, status=404)
        return web.json_response(self.gets[request.path])


async def _serve(stub: Stub, use: Callable[[str], Awaitable[T]]) -> T:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", stub.chat)
    app.router.add_get("/{tail:.*}", stub.get)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return await use(f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()


def settings_for(tmp_path: Path, name: str, **cli: str) -> ServerSettings:
    return resolve_settings({"backends": name, "models": "qwen72b-gptq",
                             "max_tokens": str(MAX_TOKENS), **cli}, {}, {}, tmp_path).server


def adapter(name: str) -> LaunchedBackend:
    backend = get_backend(name)
    assert isinstance(backend, LaunchedBackend)
    return backend


def served(tmp_path: Path, name: str, stub: Stub, **cli: str) -> tuple[ServedModel, str]:
    """The adapter's ServedModel for the stub, as if attached to it; and the stub's root."""

    async def use(root: str) -> tuple[ServedModel, str]:
        backend = adapter(name)
        entry = builtin_catalog().entries["qwen72b-gptq"]
        source = entry.source(backend.source_kinds)
        assert source is not None
        settings = settings_for(tmp_path, name, **cli)
        model = await asyncio.to_thread(backend.served, settings, entry, source, root, None)
        return model, root

    return asyncio.run(_serve(stub, use))


def send_one(tmp_path: Path, name: str, stub: Stub, **cli: str) -> RequestRecord:
    """One request through the adapter's endpoint to the stub."""

    async def use(root: str) -> RequestRecord:
        backend = adapter(name)
        entry = builtin_catalog().entries["qwen72b-gptq"]
        source = entry.source(backend.source_kinds)
        assert source is not None
        settings = settings_for(tmp_path, name, **cli)
        endpoint = backend.endpoint(settings, f"{root}{backend.api_path}",
                                    backend.model_id(source))
        model = ServedModel(name, entry.alias, endpoint, engine=name)
        async with model.client(MAX_TOKENS, 10.0) as client:
            return await client.send(3, PROMPT)

    return asyncio.run(_serve(stub, use))


# --- a good answer ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_recorded_stream_gives_a_complete_record(tmp_path: Path, name: str) -> None:
    stub = Stub(writes=recorded_stream(name))
    record = send_one(tmp_path, name, stub)

    assert record.error is None
    assert record.ok
    assert record.request_id == 3
    # Role-only, finish-only, usage-only and [DONE] events carry no text.
    assert len(record.chunk_ns) == TEXT_EVENTS
    assert record.send_ns < record.chunk_ns[0] <= record.chunk_ns[-1] <= record.end_ns
    assert record.output_tokens == 8
    assert record.output_token_source is TokenSource.USAGE
    assert record.input_tokens == 34
    assert record.input_token_source is TokenSource.USAGE
    assert record.finish_reason == "length"


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("vllm", {"ignore_eos": True, "min_tokens": MAX_TOKENS}),
        ("sglang", {"ignore_eos": True, "min_tokens": MAX_TOKENS}),
        ("lmdeploy", {"ignore_eos": True, "min_new_tokens": MAX_TOKENS}),
        ("tgi", {}),  # TGI has neither; it would drop them silently
    ],
)
def test_request_asks_each_engine_for_exactly_max_tokens(
    tmp_path: Path, name: str, extra: dict[str, Any]
) -> None:
    stub = Stub(writes=recorded_stream(name))
    assert send_one(tmp_path, name, stub).ok
    [body] = stub.bodies
    assert body["model"] == HF_ID
    assert body["max_tokens"] == MAX_TOKENS
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": PROMPT}]
    for key in ("ignore_eos", "min_tokens", "min_new_tokens"):
        assert body.get(key) == extra.get(key), key

    # Without --llmperf-ignore-eos nothing extra is sent to any engine.
    plain = Stub(writes=recorded_stream(name))
    assert send_one(tmp_path, name, plain, ignore_eos="no").ok
    assert not {"ignore_eos", "min_tokens", "min_new_tokens"} & set(plain.bodies[0])


def test_tgi_answer_cut_short_at_eos_says_stop(tmp_path: Path) -> None:
    # TGI cannot be told to ignore EOS: a short answer shows as finish_reason "stop" with
    # fewer tokens than asked for.
    events = list(recorded_stream("tgi"))
    cut = [json.loads(e.decode().removeprefix("data: ")) for e in events[:3]]
    cut[-1]["choices"][0]["finish_reason"] = "stop"
    usage = json.loads(events[-2].decode().removeprefix("data: "))
    usage["usage"] = {"prompt_tokens": 34, "completion_tokens": 3, "total_tokens": 37}
    record = send_one(tmp_path, "tgi", Stub(writes=(*map(sse, cut), sse(usage), events[-1])))

    assert record.ok
    assert record.finish_reason == "stop"
    assert record.output_tokens == 3
    assert len(record.chunk_ns) == 3


# --- errors ----------------------------------------------------------------------------------

CONTEXT_MESSAGE = {
    "vllm": "This model's maximum context length is 4096 tokens. However, you requested 5064 "
            "tokens (5000 in the messages, 64 in the completion). Please reduce the length of "
            "the messages or completion.",
    "sglang": "Requested token count exceeds the model's maximum context length of 4096 "
              "tokens. You requested a total of 5064 tokens: 5000 tokens from the input "
              "messages and 64 tokens for the completion.",
    "lmdeploy": "Input length (5000) must be smaller than the model context length (4096).",
    "tgi": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
           "Given: 5000 `inputs` tokens and 64 `max_new_tokens`",
}

# (engine, HTTP status, body as the engine writes it)
HTTP_ERRORS = [
    # vLLM >= 0.10: ErrorResponse(error=ErrorInfo(...)).
    ("vllm", 400, {"error": {"message": CONTEXT_MESSAGE["vllm"], "type": "BadRequestError",
                             "param": None, "code": 400}}),
    # vLLM before: the fields at the top level, "object": "error".
    ("vllm", 400, {"object": "error", "message": CONTEXT_MESSAGE["vllm"],
                   "type": "BadRequestError", "param": None, "code": 400}),
    ("vllm", 500, {"error": {"message": "EngineCore encountered an issue. See stack trace "
                             "(above) for the root cause.", "type": "InternalServerError",
                             "param": None, "code": 500}}),
    ("sglang", 400, {"object": "error", "message": CONTEXT_MESSAGE["sglang"],
                     "type": "BadRequestError", "param": None, "code": 400}),
    ("lmdeploy", 404, {"message": "The model 'gpt-4' does not exist.",
                       "type": "not_found_error", "code": 404, "param": None,
                       "object": "error"}),
    ("tgi", 422, {"error": CONTEXT_MESSAGE["tgi"], "error_type": "validation"}),
    ("tgi", 424, {"error": "Request failed during generation: Server error: CUDA out of "
                           "memory. Tried to allocate 448.00 MiB", "error_type": "generation"}),
    ("tgi", 429, {"error": "Model is overloaded", "error_type": "overloaded"}),
]


@pytest.mark.parametrize(("name", "status", "body"), HTTP_ERRORS,
                         ids=[f"{n}-{s}-{i}" for i, (n, s, _) in enumerate(HTTP_ERRORS)])
def test_http_error_bodies(tmp_path: Path, name: str, status: int, body: Any) -> None:
    record = send_one(tmp_path, name, Stub(writes=(json.dumps(body).encode(),), status=status))

    assert not record.ok
    assert record.error is not None
    assert record.error.startswith(f"HTTP {status}: ")
    message = body["error"] if name == "tgi" else body.get("message") or body["error"]["message"]
    assert message[:60] in record.error
    assert record.chunk_ns == ()
    assert record.output_tokens == 0


# Errors after the stream has started: an SSE event in each engine's shape.
STREAM_ERRORS: dict[str, dict[str, Any]] = {
    "vllm": {"error": {"message": "EngineCore encountered an issue.",
                       "type": "InternalServerError", "param": None, "code": 500}},
    "sglang": {"error": {"object": "error", "message": "Request aborted: out of KV cache.",
                         "type": "InternalServerError", "param": None, "code": 500}},
    "lmdeploy": {"error": {"message": CONTEXT_MESSAGE["lmdeploy"],
                           "type": "invalid_request_error", "code": 400, "param": None,
                           "object": "error"}},
    "tgi": {"error": {"message": "Request failed during generation: Server error: CUDA out "
                                 "of memory", "http_status_code": 422}},
}


@pytest.mark.parametrize("name", ENGINES)
def test_error_event_in_the_stream(tmp_path: Path, name: str) -> None:
    events = recorded_stream(name)
    # Two text events of the recording, then the error; LMDeploy also sends [DONE] after it.
    head = events[:3] if name in ("vllm", "sglang") else events[:2]
    tail = (sse("[DONE]"),) if name == "lmdeploy" else ()
    record = send_one(tmp_path, name, Stub(writes=(*head, sse(STREAM_ERRORS[name]), *tail)))

    assert not record.ok
    assert record.error is not None
    assert record.error.startswith("server error in stream")
    assert STREAM_ERRORS[name]["error"]["message"][:40] in record.error
    assert len(record.chunk_ns) == 2


# --- what the adapter says about the server --------------------------------------------------

VERSION_ANSWERS = {
    "vllm": {"/version": {"version": "0.11.0"}},
    "sglang": {"/server_info": json.loads((RECORDED / "sglang_server_info.json").read_text())},
    "tgi": {"/info": json.loads((RECORDED / "tgi_info.json").read_text())},
}
EXPECTED_VERSION = {"vllm": "0.11.0", "sglang": "0.5.4", "tgi": "3.3.6"}


@pytest.mark.parametrize("name", ["vllm", "sglang", "tgi"])
def test_served_model_of_an_attached_server(tmp_path: Path, name: str) -> None:
    model, root = served(tmp_path, name, Stub(gets=VERSION_ANSWERS[name]))

    assert model.backend == name
    assert model.model == "qwen72b-gptq"
    assert model.engine == f"{name} {EXPECTED_VERSION[name]} at {root}"
    assert model.endpoint is not None
    assert model.endpoint.base_url == f"{root}/v1"
    assert model.endpoint.model == HF_ID
    assert model.metrics_url == f"{root}/metrics"
    assert model.metric_names is adapter(name).metric_names
    assert model.server_pid is None


def test_sglang_version_from_the_older_endpoint(tmp_path: Path) -> None:
    # Before /server_info, SGLang answered the same document at /get_server_info only.
    info = json.loads((RECORDED / "sglang_server_info.json").read_text())
    model, root = served(tmp_path, "sglang", Stub(gets={"/get_server_info": info}))
    assert model.engine == f"sglang 0.5.4 at {root}"


@pytest.mark.parametrize("name", ENGINES)
def test_no_version_answer_leaves_the_plain_name(tmp_path: Path, name: str) -> None:
    broken = {"/version": ["not", "an", "object"], "/server_info": {"version": ""},
              "/info": {"model_id": HF_ID}}
    model, root = served(tmp_path, name, Stub(gets=broken))
    assert model.engine == f"{name} at {root}"


def test_lmdeploy_version_comes_from_the_engine_interpreter(tmp_path: Path) -> None:
    # LMDeploy reports no version over HTTP: the interpreter it was launched with is asked.
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 0.16.0\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    backend = adapter("lmdeploy")
    entry = builtin_catalog().entries["qwen72b-gptq"]
    source = entry.source(backend.source_kinds)
    assert source is not None

    assert backend.version("http://127.0.0.1:9") is None  # attached: not ours to ask
    backend.launch(settings_for(tmp_path, "lmdeploy", engine_python=str(python)), entry,
                   source, 8123, 2)
    assert backend.version("http://127.0.0.1:9") == "0.16.0"

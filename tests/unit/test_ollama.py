"""Ollama backend and native client against a local stub speaking Ollama's documented API.

The traffic below is written the way Ollama's Go server marshals it (field order of
``api.ChatResponse``/``api.Message``, ``omitempty`` fields left out, one object per line) and
follows docs/api.md and docs/api/errors.mdx of github.com/ollama/ollama.  The stub writes each
scripted network write on its own, a short pause apart, so that what one client read carries
is known; no test asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import stat
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pytest_llmperf.clients.ollama import NDJSONLines, OllamaClient, server_timings
from pytest_llmperf.engines import ollama as ollama_backend
from pytest_llmperf.engines.base import ServedModel, get_backend
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.engines.lifecycle import ServerStartError
from pytest_llmperf.engines.ollama import OllamaBackend, is_pulled, same_model, unload
from pytest_llmperf.results.records import RequestRecord, TokenSource
from pytest_llmperf.settings.groups import ServerSettings

DELAY_S = 0.02  # pause between two scripted network writes
TAG = "smollm2:135m"
PROMPT = "What is the capital of France? Answer in one sentence."
CREATED = "2025-10-26T17:15:24.097767Z"

# --- recorded traffic ------------------------------------------------------------------------


def line(obj: Mapping[str, Any]) -> bytes:
    """One NDJSON line as Go's encoding/json writes it: compact, UTF-8, newline-terminated."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def chunk(content: str = "", thinking: str = "") -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return line({"model": TAG, "created_at": CREATED, "message": message, "done": False})


# The final object of a streamed /api/chat answer (docs/api.md), for max_tokens=8.
STATS = {
    "total_duration": 161_934_209,
    "load_duration": 12_183_458,
    "prompt_eval_count": 34,
    "prompt_eval_duration": 21_400_000,
    "eval_count": 8,
    "eval_duration": 95_200_000,
}


def final(done_reason: str = "length", content: str = "", **stats: int) -> bytes:
    return line({"model": TAG, "created_at": CREATED,
                 "message": {"role": "assistant", "content": content},
                 "done": True, "done_reason": done_reason, **(stats or STATS)})


FRANCE = chunk(" France")
DOT = chunk(".")
# Ollama's chat stream as the network delivered it: one entry per write.  Reads 1, 2, 4, 5 and
# 6 complete lines that carry text; read 3 ends inside a line, read 7 is the stats line.
CHAT_STREAM: tuple[bytes, ...] = (
    chunk("The"),
    chunk(" capital") + chunk(" of"),  # two lines in one read
    FRANCE[:25],  # a line cut by the network ...
    FRANCE[25:] + chunk(" is"),  # ... completed in the next read, with one more line
    chunk(" Paris") + DOT[:30],
    DOT[30:],
    final(),
)
CHAT_TEXT_READS = 5
NOT_FOUND = line({"error": "model 'llama3.2:1b' not found"})
STREAM_ERROR = line({"error": "an error was encountered while running the model"})


# --- the stub server -------------------------------------------------------------------------


def model_entry(name: str) -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": CREATED, "size": 270_898_672,
            "digest": "12f0a9d2c6b4e1a7f3b8c5d9e0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9",
            "details": {"parent_model": "", "format": "gguf", "family": "llama",
                        "families": ["llama"], "parameter_size": "134.52M",
                        "quantization_level": "F16"}}


@dataclass
class FakeOllama:
    """Ollama's API as far as the backend uses it; remembers every request."""

    chat_writes: Sequence[bytes] = CHAT_STREAM
    delay_s: float = DELAY_S
    pulled: Sequence[str] = (TAG, "llama3.2:latest")
    loaded: list[str] = field(default_factory=lambda: [TAG])
    ps_lag: int = 2  # /api/ps still lists a model this many times after its unload request
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    _unloading: dict[str, int] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.root)
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/api/chat", self.chat)
        return app

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.Response:
        self.received.append(("GET", request.path, None))
        return web.json_response({"version": "0.12.6"})

    async def tags(self, request: web.Request) -> web.Response:
        self.received.append(("GET", request.path, None))
        return web.json_response({"models": [model_entry(name) for name in self.pulled]})

    async def ps(self, request: web.Request) -> web.Response:
        self.received.append(("GET", request.path, None))
        for name, left in list(self._unloading.items()):
            if left == 0:
                self.loaded.remove(name)
                del self._unloading[name]
            else:
                self._unloading[name] = left - 1
        return web.json_response({"models": [
            {**model_entry(name), "expires_at": "2025-10-26T17:45:24Z",
             "size_vram": 270_898_672, "context_length": 4096} for name in self.loaded]})

    def _known(self, model: str) -> bool:
        return any(same_model(model, name) for name in self.pulled)

    async def generate(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(("POST", request.path, body))
        if not self._known(body["model"]):
            return web.json_response({"error": f"model '{body['model']}' not found"}, status=404)
        assert body.get("keep_alive") == 0 and not body.get("prompt"), "only unloads expected"
        for name in self.loaded:
            if same_model(name, body["model"]):
                self._unloading.setdefault(name, self.ps_lag)
        return web.json_response({"model": body["model"], "created_at": CREATED, "response": "",
                                  "done": True, "done_reason": "unload"})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(("POST", request.path, body))
        if not self._known(body["model"]):
            # Before any content Ollama answers errors as one JSON object with its status.
            return web.Response(status=404, body=NOT_FOUND, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for index, data in enumerate(self.chat_writes):
            if index:
                await asyncio.sleep(self.delay_s)
            await response.write(data)
        await response.write_eof()
        return response

    def requests_to(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body in self.received if (m, p) == (method, path)]


@contextlib.contextmanager
def running(fake: FakeOllama) -> Iterator[str]:
    """Serve ``fake`` on a free port from a thread of its own (the backend's own calls are
    synchronous); yields the server root."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app(), access_log=None, handler_cancellation=True)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def send_one(root: str, *, model: str = TAG, max_tokens: int = 8,
             timeout_s: float = 10.0) -> RequestRecord:
    async def go() -> RequestRecord:
        async with OllamaClient(root, model, max_tokens=max_tokens,
                                timeout_s=timeout_s) as client:
            return await client.send(7, PROMPT)

    return asyncio.run(go())


def replay(*writes: bytes, **fake: Any) -> tuple[RequestRecord, FakeOllama]:
    stub = FakeOllama(chat_writes=writes, **fake)
    with running(stub) as root:
        return send_one(root), stub


def assert_failed(record: RequestRecord, *fragments: str) -> None:
    assert not record.ok
    assert record.error is not None
    for fragment in fragments:
        assert fragment in record.error, record.error


def settings_for(tmp_path: Path, **changes: Any) -> ServerSettings:
    base = ServerSettings(base_url=None, api_key_env=None, gpus=None, tp=None,
                          max_model_len=4096, max_num_seqs=8, gpu_memory_utilization=0.9,
                          prefix_caching=False, chunked_prefill=None, engine_args={},
                          llamacpp_bin=None, engine_python={}, ngl=None, ready_timeout=900,
                          ignore_eos=True, max_tokens=8, output_dir=tmp_path)
    return dataclasses.replace(base, **changes)


ENTRY = ModelEntry(TAG, {"ollama": ModelSource("ollama", TAG)})


# --- the native client -----------------------------------------------------------------------


def test_one_reading_per_read_that_completed_a_text_line() -> None:
    record, stub = replay(*CHAT_STREAM)

    assert record.error is None
    assert record.ok
    assert record.request_id == 7
    # Read 3 ended inside a line, so it showed no text yet; reads carrying two lines are one
    # reading; the stats line carries no text.
    assert len(record.chunk_ns) == CHAT_TEXT_READS
    assert list(record.chunk_ns) == sorted(set(record.chunk_ns))
    assert record.send_ns < record.chunk_ns[0] <= record.chunk_ns[-1] <= record.end_ns
    # What was asked: the native chat API, streamed, capped by num_predict.
    [body] = stub.requests_to("POST", "/api/chat")
    assert body == {"model": TAG, "messages": [{"role": "user", "content": PROMPT}],
                    "stream": True, "options": {"num_predict": 8}}


def test_final_stats_become_token_counts_and_server_timings() -> None:
    record, _ = replay(*CHAT_STREAM)

    assert record.output_tokens == 8  # eval_count
    assert record.output_token_source is TokenSource.USAGE
    assert record.input_tokens == 34  # prompt_eval_count
    assert record.input_token_source is TokenSource.USAGE
    assert record.finish_reason == "length"  # done_reason: num_predict ended the answer
    assert record.server_timings == pytest.approx({
        "predicted_n": 8, "predicted_ms": 95.2, "predicted_per_token_ms": 11.9,
        "predicted_per_second": 84.0336, "prompt_tokens": 34, "prompt_ms": 21.4,
        "load_ms": 12.183458, "total_ms": 161.934209,
    }, rel=1e-4)


def test_server_timings_of_the_documented_final_object() -> None:
    # docs/api.md, "Chat request (Streaming)": 282 tokens in 4535599000 ns.
    timings = server_timings({"total_duration": 4883583458, "load_duration": 1334875,
                              "prompt_eval_count": 26, "prompt_eval_duration": 342546000,
                              "eval_count": 282, "eval_duration": 4535599000})
    assert timings["predicted_per_token_ms"] == pytest.approx(4535.599 / 282)
    assert timings["predicted_per_second"] == pytest.approx(282 / 4.535599)
    assert "prompt_per_token_ms" not in timings  # prompt_eval_count includes cached tokens
    assert server_timings({}) == {}


def test_thinking_counts_as_generated_text() -> None:
    record, _ = replay(
        chunk(thinking="Okay, the user asks"),
        chunk(thinking=" about France."),
        chunk("Paris."),
        final("stop", eval_count=9, eval_duration=90_000_000, prompt_eval_count=20),
    )

    assert record.error is None
    assert record.ok
    assert len(record.chunk_ns) == 3  # two thinking reads and one content read
    assert record.output_tokens == 9
    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == record.answer_end_ns == record.chunk_ns[2]
    # Ollama counts no thinking tokens: the tokenizer does, after the window.
    assert record.reasoning_tokens is None
    assert record.reasoning_text == "Okay, the user asks about France."
    assert record.finish_reason == "stop"  # the model ended it before num_predict


def test_a_final_line_that_carries_text_is_a_reading() -> None:
    # docs/api/streaming.mdx shows the last piece of text on the "done": true object.
    record, _ = replay(chunk("That"), final("stop", content="!"))

    assert record.error is None
    assert len(record.chunk_ns) == 2
    assert record.output_tokens == 8


def test_a_utf8_character_split_between_reads_is_read_once_whole() -> None:
    city = chunk(" Zürich 東京")
    cut = city.index("東".encode()) + 1  # inside the three bytes of 東
    record, _ = replay(city[:cut], city[cut:], final())

    assert record.error is None
    assert len(record.chunk_ns) == 1


def test_error_line_mid_stream_becomes_the_record_error() -> None:
    # docs/api/errors.mdx: mid-stream errors arrive as an {"error": ...} line, status 200.
    record, _ = replay(chunk("The"), chunk(" sky"), STREAM_ERROR)

    assert_failed(record, "server error in stream",
                  "an error was encountered while running the model")
    assert len(record.chunk_ns) == 2  # what came before the error is still observed
    assert record.output_tokens == 0
    assert record.output_token_source is None


def test_http_404_for_a_model_that_is_not_pulled() -> None:
    stub = FakeOllama()
    with running(stub) as root:
        record = send_one(root, model="llama3.2:1b")

    assert_failed(record, "HTTP 404: model 'llama3.2:1b' not found")
    assert record.chunk_ns == ()


def test_stream_cut_in_the_middle_of_a_line() -> None:
    sky = chunk(" sky")
    record, _ = replay(chunk("The"), sky[: len(sky) // 2])

    assert_failed(record, "stream ended in the middle of a line")
    assert len(record.chunk_ns) == 1


def test_stream_cut_inside_a_utf8_character() -> None:
    city = chunk(" Zürich")
    record, _ = replay(chunk("The"), city[: city.index("ü".encode()) + 1])

    assert_failed(record, "stream ended inside a UTF-8 character")


def test_stream_that_ends_without_the_final_object() -> None:
    record, _ = replay(chunk("The"), chunk(" sky"))

    assert_failed(record, "stream ended before the server finished the answer")
    assert record.output_tokens == 0


def test_malformed_line() -> None:
    record, _ = replay(chunk("The"), b"<html>502 Bad Gateway</html>\n", final())

    assert_failed(record, "malformed stream line", "502 Bad Gateway")


def test_unreachable_server_is_an_error_record_not_an_exception() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    record = send_one(f"http://127.0.0.1:{port}")

    assert_failed(record, "ConnectError: Cannot connect")


def test_no_complete_answer_within_the_timeout() -> None:
    stub = FakeOllama(chat_writes=(chunk("The"), final()), delay_s=5.0)
    with running(stub) as root:
        record = send_one(root, timeout_s=0.3)

    assert_failed(record, "no complete answer within 0.3 s")


def test_ndjson_lines_keep_partial_lines_until_their_newline() -> None:
    lines = NDJSONLines()
    assert lines.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert lines.feed(b":2}\n\n") == [b'{"b":2}']  # blank lines are no objects
    assert lines.feed(b'{"c"') == []
    assert lines.close() == b'{"c"'


# --- the backend: model present, version, unload ---------------------------------------------


@pytest.mark.parametrize(("given", "listed"), [
    ("smollm2:135m", "smollm2:135m"),
    ("llama3.2", "llama3.2:latest"),
    ("LLAMA3.2:latest", "llama3.2:latest"),
    ("registry.ollama.ai/library/qwen2.5:7b", "qwen2.5:7b"),
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
     "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
])
def test_same_model_as_ollama_lists_it(given: str, listed: str) -> None:
    assert same_model(given, listed)


def test_other_tags_are_other_models() -> None:
    assert not same_model("qwen2.5:7b", "qwen2.5:72b")
    assert not same_model("llama3.2:1b", "llama3.2:latest")


def test_served_model_speaks_the_native_api(tmp_path: Path) -> None:
    stub = FakeOllama()
    backend = OllamaBackend()
    with running(stub) as root:
        served = backend.served(settings_for(tmp_path), ENTRY, ENTRY.sources["ollama"], root,
                                None)
        assert isinstance(served, ServedModel)

        async def go() -> RequestRecord:
            async with served.client(8, 10.0) as client:
                assert isinstance(client, OllamaClient)
                return await client.send(1, PROMPT)

        record = asyncio.run(go())

    assert served.engine == f"ollama 0.12.6 at {root}"
    assert served.endpoint is not None and served.endpoint.base_url == f"{root}/v1"
    assert served.metrics_url is None and served.server_pid is None
    assert record.ok and record.output_tokens == 8
    assert len(stub.requests_to("GET", "/api/tags")) == 1


def test_a_tag_that_is_not_pulled_fails_with_the_pull_command(tmp_path: Path) -> None:
    entry = ModelEntry("llama3.2:1b", {"ollama": ModelSource("ollama", "llama3.2:1b")})
    with running(FakeOllama()) as root:
        assert is_pulled(root, TAG)
        assert not is_pulled(root, "llama3.2:1b")
        with pytest.raises(ServerStartError) as failure:
            OllamaBackend().served(settings_for(tmp_path), entry, entry.sources["ollama"],
                                   root, None)

    message = str(failure.value)
    assert "run `ollama pull llama3.2:1b`" in message
    assert "\n" not in message


def test_version_from_api_version() -> None:
    with running(FakeOllama()) as root:
        assert OllamaBackend().version(root) == "0.12.6"
    assert OllamaBackend().version(root) is None  # the server is gone


def test_unload_asks_with_keep_alive_0_and_waits_until_ps_drops_the_model() -> None:
    stub = FakeOllama(ps_lag=2)
    with running(stub) as root:
        unload(root, TAG, poll_s=0.01)

    assert stub.requests_to("POST", "/api/generate") == [{"model": TAG, "keep_alive": 0}]
    # Listed twice more after the request, gone on the third look.
    assert len(stub.requests_to("GET", "/api/ps")) == 3
    assert stub.loaded == []


def test_unload_gives_up_after_its_timeout() -> None:
    stub = FakeOllama(ps_lag=10**6)
    with running(stub) as root, pytest.raises(TimeoutError, match="still loaded"):
        unload(root, TAG, timeout_s=0.05, poll_s=0.01)


def test_attached_serve_unloads_the_model_at_teardown(tmp_path: Path) -> None:
    stub = FakeOllama(ps_lag=1)
    backend = get_backend("ollama")
    with running(stub) as root:
        # --base-url may name Ollama's OpenAI root; the native API is at the server root.
        settings = settings_for(tmp_path, base_url=f"{root}/v1")
        with backend.serve(settings, ENTRY, tmp_path) as served:
            assert served.engine == f"ollama 0.12.6 at {root}"
            assert stub.requests_to("POST", "/api/generate") == []  # nothing unloaded yet
        assert stub.requests_to("POST", "/api/generate") == [{"model": TAG, "keep_alive": 0}]
        assert stub.loaded == []


def test_attached_serve_warns_when_the_model_stays_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama_backend, "UNLOAD_TIMEOUT_S", 0.05)
    stub = FakeOllama(ps_lag=10**6)
    with running(stub) as root, pytest.warns(RuntimeWarning, match="still loaded"), \
            OllamaBackend().serve(settings_for(tmp_path, base_url=root), ENTRY, tmp_path):
        pass


# --- the backend: launch ---------------------------------------------------------------------


def test_launch_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which",
                        lambda name: "/usr/local/bin/ollama" if name == "ollama" else None)
    settings = settings_for(tmp_path, max_num_seqs=16, max_model_len=8192,
                            engine_args={"ollama": ("OLLAMA_FLASH_ATTENTION=1",
                                                    "OLLAMA_KV_CACHE_TYPE=q8_0")})
    spec = OllamaBackend().launch(settings, ENTRY, ENTRY.sources["ollama"], 43210, 1)

    assert spec.argv == ("/usr/local/bin/ollama", "serve")
    assert dict(spec.env) == {
        "OLLAMA_HOST": "127.0.0.1:43210",
        "OLLAMA_NUM_PARALLEL": "16",
        "OLLAMA_CONTEXT_LENGTH": "8192",
        "OLLAMA_KEEP_ALIVE": "30m",
        "OLLAMA_NOPRUNE": "1",
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": "q8_0",
    }


def test_engine_args_must_be_ollama_settings(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, base_url="http://127.0.0.1:11434",
                            engine_args={"ollama": ("--verbose",)})
    with pytest.raises(ValueError, match="OLLAMA_NAME=VALUE"):
        OllamaBackend().check(settings, ENTRY)


def test_missing_binary_is_one_line_naming_the_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    backend = OllamaBackend()
    reason = backend.missing(settings_for(tmp_path))

    assert reason is not None
    assert "https://ollama.com/download" in reason
    assert "\n" not in reason
    with pytest.raises(ValueError, match=r"backend ollama: .*ollama\.com/download"):
        backend.check(settings_for(tmp_path), ENTRY)
    backend.check(settings_for(tmp_path, base_url="http://127.0.0.1:11434"), ENTRY)  # attach


def test_backend_serves_only_ollama_sources(tmp_path: Path) -> None:
    hf_only = ModelEntry("qwen", {"hf": ModelSource("hf", "Qwen/Qwen2.5-0.5B-Instruct")})
    backend = OllamaBackend()
    assert backend.unsupported(settings_for(tmp_path), ENTRY) is None
    assert "no ollama source" in (backend.unsupported(settings_for(tmp_path), hf_only) or "")


# A stand-in `ollama` binary: `ollama serve` with the endpoints the backend uses, recording the
# environment it was started with and the requests it got.
FAKE_BINARY = """\
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

record = os.environ["FAKE_OLLAMA_RECORD"]
with open(record, "a") as out:
    env = {k: v for k, v in os.environ.items() if k.startswith("OLLAMA_")}
    out.write(json.dumps({"argv": sys.argv[1:], "env": env}) + "\\n")
host, port = os.environ["OLLAMA_HOST"].rsplit(":", 1)
tag = os.environ["FAKE_OLLAMA_TAG"]

class Handler(BaseHTTPRequestHandler):
    def answer(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer({"/api/version": {"version": "0.0.1-fake"},
                     "/api/tags": {"models": [{"name": tag, "model": tag}]},
                     "/api/ps": {"models": []}}.get(self.path, {}))

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(record, "a") as out:
            out.write(json.dumps({"post": self.path, "body": body}) + "\\n")
        self.answer({"model": body["model"], "response": "", "done": True,
                     "done_reason": "unload"})

    def log_message(self, *args):
        pass

ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
"""


def test_launched_serve_passes_the_environment_and_unloads_before_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    binary = bindir / "ollama"
    binary.write_text(f"#!{sys.executable}\n{FAKE_BINARY}")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record.ndjson"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_OLLAMA_RECORD", str(record))
    monkeypatch.setenv("FAKE_OLLAMA_TAG", TAG)
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11434")  # ours must win over the user's
    settings = settings_for(tmp_path, max_num_seqs=4, max_model_len=2048, ready_timeout=60)

    with OllamaBackend().serve(settings, ENTRY, tmp_path) as served:
        assert served.engine == "ollama 0.0.1-fake"
        assert served.server_pid is not None
        assert served.log_path is not None and served.log_path.parent == tmp_path

    started, *posts = [json.loads(text) for text in record.read_text().splitlines()]
    assert started["argv"] == ["serve"]
    assert started["env"]["OLLAMA_HOST"].startswith("127.0.0.1:")
    assert served.endpoint is not None
    assert served.endpoint.base_url == f"http://{started['env']['OLLAMA_HOST']}/v1"
    assert started["env"]["OLLAMA_NUM_PARALLEL"] == "4"
    assert started["env"]["OLLAMA_CONTEXT_LENGTH"] == "2048"
    assert started["env"]["OLLAMA_KEEP_ALIVE"] == "30m"
    assert posts == [{"post": "/api/generate", "body": {"model": TAG, "keep_alive": 0}}]

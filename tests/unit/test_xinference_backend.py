"""The Xinference backend's parts that need no Xinference: the GGUF header it reads, the
custom-model registration it sends, and how it starts ``xinference-local``.  Launched for
real: tests/integration/test_xinference_cpu.py (opt-in, .ci/xinference-env)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pytest_llmperf.engines.base import get_backend
from pytest_llmperf.engines.catalog import ModelSource, builtin_catalog
from pytest_llmperf.engines.gguf_metadata import GGUFError, read_gguf_metadata
from pytest_llmperf.engines.lifecycle import ServerStartError
from pytest_llmperf.engines.xinference import XinferenceBackend, custom_model_spec
from pytest_llmperf.settings.resolve import resolve_settings

TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_gguf(path: Path, metadata: dict[str, object]) -> Path:
    """A GGUF v3 header with ``metadata`` (strings, u32 numbers, lists of strings)."""
    body = b""
    for key, value in metadata.items():
        body += _string(key)
        if isinstance(value, str):
            body += struct.pack("<I", 8) + _string(value)
        elif isinstance(value, int):
            body += struct.pack("<II", 4, value)
        else:
            assert isinstance(value, list)
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_string(v) for v in value)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata)) + body)
    return path


def test_the_gguf_header_gives_the_keys_asked_for(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "m.gguf", {
        "general.architecture": "llama", "tokenizer.ggml.tokens": ["<eos>", "a", "<|end|>"],
        "tokenizer.ggml.eos_token_id": 2, "tokenizer.chat_template": TEMPLATE})
    assert read_gguf_metadata(gguf, {"tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                                     "missing"}) == {
        "tokenizer.chat_template": TEMPLATE, "tokenizer.ggml.eos_token_id": 2}
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"not a model")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf_metadata(plain, set())
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf.read_bytes()[:40])
    with pytest.raises(GGUFError, match="ends early"):
        read_gguf_metadata(cut, {"tokenizer.chat_template"})


def test_the_registration_takes_the_file_s_template_and_stop_tokens(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "My-Model.Q4_1.gguf", {
        "tokenizer.ggml.tokens": ["<|endoftext|>", "a", "<|im_end|>"],
        "tokenizer.ggml.eos_token_id": 2, "tokenizer.chat_template": TEMPLATE})
    spec = custom_model_spec("llmperf-m", gguf, "Q4_1", 8192)
    assert spec["chat_template"] == TEMPLATE
    assert (spec["stop_token_ids"], spec["stop"]) == ([0, 2], ["<|endoftext|>", "<|im_end|>"])
    model_spec, = spec["model_specs"]
    assert model_spec["model_uri"] == str(tmp_path)  # the directory, not the file
    assert model_spec["model_file_name_template"] == "My-Model.Q4_1.gguf"
    assert (model_spec["model_format"], model_spec["quantization"]) == ("ggufv2", "Q4_1")
    assert spec["context_length"] == 8192 and spec["model_ability"] == ["generate", "chat"]
    bare = write_gguf(tmp_path / "bare.gguf", {"tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(ServerStartError, match="has no chat template"):
        custom_model_spec("m", bare, "Q4_1", 8192)


def test_xinference_local_starts_beside_its_python_without_login_or_hub(tmp_path: Path) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    settings = resolve_settings({"engine_python": f"xinference: {python}",
                                 "backend": "xinference"}, {}, {}, tmp_path)
    backend = get_backend("xinference")
    assert isinstance(backend, XinferenceBackend)
    entry = builtin_catalog().entries["smollm2-135m"]
    spec = backend.launch(settings.server, entry, ModelSource("gguf", "/m/x.gguf"), 4321, 1)
    assert spec.argv[0] == str(python.parent / "xinference-local")
    assert spec.argv[1:5] == ("--host", "127.0.0.1", "--port", "4321")
    assert "--metrics-exporter-port" in spec.argv
    assert spec.env["XINFERENCE_AUTH_ADVANCED"] == "0"
    assert spec.env["HF_HUB_OFFLINE"] == "1"
    assert spec.env["XINFERENCE_HOME"].startswith(str(settings.server.output_dir))
    # Not installed there: one line that says where it looked and how to install it.
    assert f"{python} not found (--llmperf-engine-python)" in (
        backend.missing(settings.server) or "")

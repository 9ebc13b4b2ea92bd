"""The launch command lines of vLLM, SGLang, LMDeploy and TGI, as data.

Nothing is launched: each test resolves settings the way the plugin does, takes a catalogue
entry and asserts the argv (and environment) the engine would be started with, plus what
``missing()``, ``unsupported()`` and the OOM patterns say.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

import pytest

from pytest_llmperf.engines import tgi as tgi_module
from pytest_llmperf.engines.base import get_backend
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource, builtin_catalog
from pytest_llmperf.engines.launched import LaunchedBackend, LaunchSpec
from pytest_llmperf.engines.lmdeploy import LMDeployBackend
from pytest_llmperf.engines.sglang import SGLangBackend
from pytest_llmperf.engines.tgi import TGIBackend
from pytest_llmperf.engines.vllm import VLLMBackend
from pytest_llmperf.settings.groups import ServerSettings
from pytest_llmperf.settings.resolve import resolve_settings

ENGINES = ("vllm", "sglang", "lmdeploy", "tgi")
HF_ID = "Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4"
PORT = 8123
MASTER_PORT = 29777  # what free_port() gives TGI's torch.distributed master in these tests
PY = sys.executable
TP_FLAG = {"vllm": "--tensor-parallel-size", "sglang": "--tp-size", "lmdeploy": "--tp",
           "tgi": "--num-shard"}

# qwen72b-gptq with the default settings (max_model_len 4096, max_num_seqs 8, memory 0.9,
# prefix caching off, chunked prefill left to the engine) and the catalogue's tp of 2.
EXPECTED_ARGV: dict[str, tuple[str, ...]] = {
    "vllm": (
        PY, "-m", "vllm.entrypoints.openai.api_server", "--model", HF_ID,
        "--host", "127.0.0.1", "--port", "8123", "--tensor-parallel-size", "2",
        "--max-model-len", "4096", "--max-num-seqs", "8", "--gpu-memory-utilization", "0.9",
        "--no-enable-prefix-caching",
    ),
    "sglang": (
        PY, "-m", "sglang.launch_server", "--model-path", HF_ID,
        "--host", "127.0.0.1", "--port", "8123", "--tp-size", "2",
        "--context-length", "4096", "--max-running-requests", "8",
        "--mem-fraction-static", "0.9", "--enable-metrics", "--disable-radix-cache",
    ),
    "lmdeploy": (
        PY, "-m", "lmdeploy", "serve", "api_server", HF_ID,
        "--server-name", "127.0.0.1", "--server-port", "8123", "--tp", "2",
        "--session-len", "4096", "--max-batch-size", "8", "--cache-max-entry-count", "0.9",
        "--model-format", "gptq",
    ),
    "tgi": (
        "text-generation-launcher", "--model-id", HF_ID, "--hostname", "127.0.0.1",
        "--port", "8123", "--num-shard", "2", "--max-input-tokens", "4095",
        "--max-total-tokens", "4096", "--max-batch-size", "8", "--cuda-memory-fraction", "0.9",
        "--shard-uds-path", "/tmp/llmperf-tgi-8123", "--master-port", str(MASTER_PORT),
        "--quantize", "gptq",
    ),
}


@pytest.fixture(autouse=True)
def _fixed_master_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tgi_module, "free_port", lambda: MASTER_PORT)


def settings_for(tmp_path: Path, backend: str, **cli: str) -> ServerSettings:
    return resolve_settings({"backends": backend, "models": "qwen72b-gptq", **cli}, {}, {},
                            tmp_path).server


def engine(name: str) -> LaunchedBackend:
    backend = get_backend(name)
    assert isinstance(backend, LaunchedBackend)
    return backend


def launch(
    tmp_path: Path, name: str, entry: ModelEntry | None = None, /, **cli: str
) -> LaunchSpec:
    """The spec ``name`` would launch ``entry`` (default qwen72b-gptq) with."""
    settings = settings_for(tmp_path, name, **cli)
    backend = engine(name)
    model = entry or builtin_catalog().entries["qwen72b-gptq"]
    source = model.source(backend.source_kinds)
    assert source is not None
    return backend.launch(settings, model, source, PORT, backend.tp_size(settings, model))


def value_after(argv: tuple[str, ...], flag: str) -> str:
    assert argv.count(flag) == 1, (flag, argv)
    return argv[argv.index(flag) + 1]


def hf_entry(quantization: str | None) -> ModelEntry:
    return ModelEntry("custom", {"hf": ModelSource("hf", "org/model", quantization)}, tp=1)


# --- the command lines -----------------------------------------------------------------------


def test_registry_names_each_engine() -> None:
    classes = {"vllm": VLLMBackend, "sglang": SGLangBackend, "lmdeploy": LMDeployBackend,
               "tgi": TGIBackend}
    for name, cls in classes.items():
        backend = get_backend(name)
        assert type(backend) is cls
        assert backend.name == name


@pytest.mark.parametrize("name", ENGINES)
def test_default_command_line(tmp_path: Path, name: str) -> None:
    spec = launch(tmp_path, name)
    assert spec.argv == EXPECTED_ARGV[name]


@pytest.mark.parametrize("name", ENGINES)
def test_tp_comes_from_the_catalogue_unless_overridden(tmp_path: Path, name: str) -> None:
    assert value_after(launch(tmp_path, name).argv, TP_FLAG[name]) == "2"  # catalogue: tp = 2
    assert value_after(launch(tmp_path, name, tp="4").argv, TP_FLAG[name]) == "4"


@pytest.mark.parametrize("name", ENGINES)
def test_sizes_come_from_the_settings(tmp_path: Path, name: str) -> None:
    argv = launch(tmp_path, name, max_model_len="8192", max_num_seqs="32",
                  gpu_memory_utilization="0.85").argv
    flags = {
        "vllm": ("--max-model-len", "--max-num-seqs", "--gpu-memory-utilization"),
        "sglang": ("--context-length", "--max-running-requests", "--mem-fraction-static"),
        "lmdeploy": ("--session-len", "--max-batch-size", "--cache-max-entry-count"),
        "tgi": ("--max-total-tokens", "--max-batch-size", "--cuda-memory-fraction"),
    }[name]
    assert [value_after(argv, flag) for flag in flags] == ["8192", "32", "0.85"]
    if name == "tgi":
        assert value_after(argv, "--max-input-tokens") == "8191"  # must stay below the total
        # Above TGI's default prefill budget (4096) the budget must cover the longest prompt.
        assert value_after(argv, "--max-batch-prefill-tokens") == "8192"


@pytest.mark.parametrize("name", ENGINES)
def test_engine_args_are_appended_last_and_only_to_their_engine(
    tmp_path: Path, name: str
) -> None:
    extra = {"vllm": ("--enforce-eager", "--swap-space", "4"),
             "sglang": ("--disable-cuda-graph",),
             "lmdeploy": ("--backend", "pytorch"),
             "tgi": ("--dtype", "bfloat16")}
    cli = "; ".join(f"{engine_name}: {' '.join(args)}" for engine_name, args in extra.items())
    argv = launch(tmp_path, name, engine_args=cli).argv
    assert argv == EXPECTED_ARGV[name] + extra[name]


@pytest.mark.parametrize("name", ["vllm", "sglang", "lmdeploy"])
def test_python_engines_run_in_the_named_interpreter(tmp_path: Path, name: str) -> None:
    argv = launch(tmp_path, name, engine_python=f"{name}: /opt/{name}-venv/bin/python").argv
    assert argv[0] == f"/opt/{name}-venv/bin/python"
    assert argv[1] == "-m"
    everyone = launch(tmp_path, name, engine_python="/opt/engines/bin/python").argv
    assert everyone[0] == "/opt/engines/bin/python"


def test_prefix_caching_flags(tmp_path: Path) -> None:
    on = {name: launch(tmp_path, name, prefix_caching="yes") for name in ENGINES}
    off = {name: launch(tmp_path, name) for name in ENGINES}

    assert "--enable-prefix-caching" in on["vllm"].argv
    assert "--no-enable-prefix-caching" not in on["vllm"].argv
    assert "--no-enable-prefix-caching" in off["vllm"].argv  # vLLM's own default is on
    assert "--disable-radix-cache" not in on["sglang"].argv
    assert "--disable-radix-cache" in off["sglang"].argv
    assert "--enable-prefix-caching" in on["lmdeploy"].argv
    assert "--enable-prefix-caching" not in off["lmdeploy"].argv  # LMDeploy's default is off
    # TGI has no flag: its environment variable turns the cache off.
    assert dict(on["tgi"].env) == {}
    assert dict(off["tgi"].env) == {"PREFIX_CACHING": "0"}
    for name in ("vllm", "sglang", "lmdeploy"):
        assert dict(on[name].env) == dict(off[name].env) == {}


@pytest.mark.parametrize(
    ("setting", "flags"),
    [(None, ()), ("yes", ("--enable-chunked-prefill",)), ("no", ("--no-enable-chunked-prefill",))],
)
def test_vllm_chunked_prefill_only_when_asked(
    tmp_path: Path, setting: str | None, flags: tuple[str, ...]
) -> None:
    cli = {} if setting is None else {"chunked_prefill": setting}
    argv = launch(tmp_path, "vllm", **cli).argv
    assert tuple(a for a in argv if "chunked-prefill" in a) == flags


@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_vllm_and_sglang_leave_gptq_and_awq_to_the_checkpoint(tmp_path: Path, name: str) -> None:
    # "--quantization gptq" would force the slow kernel instead of Marlin.
    for method in ("gptq", "awq", "GPTQ"):
        assert "--quantization" not in launch(tmp_path, name, hf_entry(method)).argv
    for method in ("fp8", "bitsandbytes", "gptq_marlin"):
        assert value_after(launch(tmp_path, name, hf_entry(method)).argv,
                           "--quantization") == method
    assert "--quantization" not in launch(tmp_path, name, hf_entry(None)).argv


def test_lmdeploy_and_tgi_name_the_quantization(tmp_path: Path) -> None:
    assert value_after(launch(tmp_path, "lmdeploy", hf_entry("awq")).argv,
                       "--model-format") == "awq"
    assert value_after(launch(tmp_path, "tgi", hf_entry("awq")).argv, "--quantize") == "awq"
    assert "--model-format" not in launch(tmp_path, "lmdeploy", hf_entry(None)).argv
    assert "--quantize" not in launch(tmp_path, "tgi", hf_entry(None)).argv


def test_tgi_master_port_only_when_sharded(tmp_path: Path) -> None:
    single = launch(tmp_path, "tgi", hf_entry(None)).argv  # tp = 1
    assert "--master-port" not in single
    assert value_after(single, "--num-shard") == "1"
    assert value_after(launch(tmp_path, "tgi").argv, "--master-port") == str(MASTER_PORT)


# --- what cannot run here --------------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_unsupported_without_an_hf_source(tmp_path: Path, name: str) -> None:
    settings = settings_for(tmp_path, name)
    backend = engine(name)
    catalog = builtin_catalog().entries
    reason = backend.unsupported(settings, catalog["qwen72b-q4km"])  # Ollama tag only
    assert reason is not None
    assert "qwen72b-q4km has no hf source" in reason
    assert name in reason
    assert backend.unsupported(settings, catalog["qwen72b-gptq"]) is None


@pytest.mark.parametrize(("name", "module", "package"),
                         [("vllm", "vllm", "pip install vllm"),
                          ("sglang", "sglang", "pip install sglang"),
                          ("lmdeploy", "lmdeploy", "pip install lmdeploy")])
def test_missing_python_engine_names_the_package(
    tmp_path: Path, name: str, module: str, package: str
) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed in this interpreter")
    settings = settings_for(tmp_path, name)
    backend = engine(name)
    reason = backend.missing(settings)
    assert reason is not None
    assert "\n" not in reason
    assert f"'{module}'" in reason
    assert package in reason
    with pytest.raises(ValueError, match=f"^backend {name}: "):
        backend.check(settings, builtin_catalog().entries["qwen72b-gptq"])
    # Attaching to a running server needs nothing installed.
    attached = settings_for(tmp_path, name, base_url="http://127.0.0.1:9/v1")
    backend.check(attached, builtin_catalog().entries["qwen72b-gptq"])


@pytest.mark.parametrize("name", ["vllm", "sglang", "lmdeploy"])
def test_missing_engine_interpreter(tmp_path: Path, name: str) -> None:
    absent = tmp_path / "no-such-venv" / "bin" / "python"
    reason = engine(name).missing(settings_for(tmp_path, name, engine_python=str(absent)))
    assert reason is not None
    assert str(absent) in reason
    assert "not found" in reason


def _fake_binaries(directory: Path, *names: str) -> None:
    directory.mkdir(exist_ok=True)
    for binary in names:
        path = directory / binary
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_tgi_missing_names_its_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, "tgi")
    backend = engine("tgi")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    reason = backend.missing(settings)
    assert reason is not None
    assert "\n" not in reason
    for binary in ("text-generation-launcher", "text-generation-router",
                   "text-generation-server"):
        assert binary in reason
    assert "ghcr.io/huggingface/text-generation-inference" in reason
    assert "--base-url" in reason

    _fake_binaries(bin_dir, "text-generation-launcher")
    partial = backend.missing(settings)
    assert partial is not None
    assert not partial.startswith("text-generation-launcher")
    assert "text-generation-router" in partial

    _fake_binaries(bin_dir, "text-generation-router", "text-generation-server")
    assert backend.missing(settings) is None
    assert os.environ["PATH"] == str(bin_dir)


# --- out-of-memory log lines -----------------------------------------------------------------

# Lines the engines print when the model or its KV cache does not fit (from their sources).
OOM_LINES = {
    "vllm": [
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.02 GiB. GPU 0 has a "
        "total capacity of 79.19 GiB of which 412.00 MiB is free.",
        "ValueError: No available memory for the cache blocks. Try increasing "
        "`gpu_memory_utilization` when initializing the engine.",
        "ValueError: To serve at least one request with the models's max seq len (32768), "
        "(8.00 GiB KV cache is needed, which is larger than the available KV cache memory "
        "(2.19 GiB). Based on the available memory, the estimated maximum model length is "
        "8960. Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
        "initializing the engine.",
        "ValueError: Free memory on device (30.1/79.19 GiB) on startup is less than desired "
        "GPU memory utilization (0.9, 71.27 GiB). Decrease GPU memory utilization or reduce "
        "GPU memory used by other processes.",
    ],
    "sglang": [
        "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
        "RuntimeError: CUDA error: out of memory",
    ],
    "lmdeploy": [
        "RuntimeError: No enough gpu memory for kv cache.",
        "RuntimeError: No enough gpu memory for runtime.",
        "[TM][ERROR] CUDA runtime error: out of memory /lmdeploy/src/turbomind/utils/"
        "allocator.h:231",
    ],
    "tgi": [
        "Not enough memory to handle 4096 prefill tokens. You need to decrease "
        "`--max-batch-prefill-tokens`",
        "Error: Warmup(Generation(\"Not enough memory to handle `max_total_tokens=4096`\"))",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 448.00 MiB.",
    ],
}
HARMLESS_LINES = [
    "INFO 01-23 15:48:33 [gpu_worker.py:298] Available KV cache memory: 52.31 GiB",
    "the current vLLM instance can use total_gpu_memory (79.19GiB) x gpu_memory_utilization "
    "(0.90) = 71.27GiB",
    "[2026-03-03 23:23:05] Memory pool end. avail mem=8.62 GB",
    "INFO text_generation_launcher: Using prefill chunking = True",
]


def _matches(backend: LaunchedBackend, line: str) -> bool:
    # As ManagedServer matches: case-insensitive substrings.
    return any(pattern.lower() in line.lower() for pattern in backend.oom_patterns)


@pytest.mark.parametrize("name", ENGINES)
def test_oom_patterns_match_the_engines_messages(name: str) -> None:
    backend = engine(name)
    for line in OOM_LINES[name]:
        assert _matches(backend, line), line
    for line in HARMLESS_LINES:
        assert not _matches(backend, line), line

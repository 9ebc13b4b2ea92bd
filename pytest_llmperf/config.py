"""Settings: one immutable record, resolved once per session.

Each setting is looked up command line > environment (``LLMPERF_*``) > ini/pyproject >
default.  A bad value raises :class:`SettingError` naming the value and where it came from.
This module imports nothing heavy: it runs when pytest loads the plugin.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["BACKENDS", "OPTIONS", "Option", "SettingError", "Settings", "resolve_settings"]

BACKENDS: tuple[str, ...] = (
    "llamacpp", "transformers", "vllm", "sglang", "lmdeploy", "tgi", "ollama", "openai",
)
T = TypeVar("T")


class SettingError(ValueError):
    """A setting with a bad value; the message names the value and its source."""


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting: its spellings in every source, its help text and its parser."""

    name: str  # field of Settings
    flag: str  # command-line flag
    help: str
    parse: Callable[[str], T]
    default: str | None

    @property
    def env(self) -> str:
        return "LLMPERF_" + self.name.upper()

    @property
    def ini(self) -> str:
        return "llmperf_" + self.name

    @property
    def dest(self) -> str:
        return "llmperf_" + self.name


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number < minimum:
            raise ValueError(f"expected a whole number >= {minimum}")
        return number

    return parse


def _list_of(parse: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """A comma list, each item parsed by ``parse``; duplicates are dropped, order kept."""

    def parse_list(value: str) -> tuple[T, ...]:
        items = [item.strip() for item in value.split(",")]
        if not all(items):
            raise ValueError("expected a comma-separated list with no empty items")
        parsed: list[T] = []
        for item in items:
            try:
                one = parse(item)
            except ValueError as exc:
                raise ValueError(f"{item!r}: {exc}") from None
            if one not in parsed:
                parsed.append(one)
        return tuple(parsed)

    return parse_list


def _gpu_sets(value: str) -> tuple[tuple[int, ...], ...]:
    """``0,1`` or, one set per pytest-xdist worker, ``0,1|2,3``."""
    sets: list[tuple[int, ...]] = []
    for part in value.split("|"):
        try:
            ids = tuple(int(item) for item in part.split(","))
        except ValueError:
            raise ValueError("expected GPU indices such as 0,1 (or 0,1|2,3: one set per "
                             "pytest-xdist worker)") from None
        if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
            raise ValueError(f"GPU set {part!r} has a negative or repeated index")
        sets.append(ids)
    seen = [i for ids in sets for i in ids]
    if len(set(seen)) != len(seen):
        raise ValueError("the GPU sets of different workers must not share a GPU")
    return tuple(sets)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 < number < 3600:
        raise ValueError("expected a number of seconds greater than 0")
    return number


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number between 0 and 1") from None
    if not 0 < number <= 1:
        raise ValueError("expected a number greater than 0 and at most 1")
    return number


def _engine_args(value: str) -> Mapping[str, tuple[str, ...]]:
    """``vllm: --swap-space 4; sglang: --mem-fraction-static 0.8`` -> per-backend argv."""
    import shlex

    args: dict[str, tuple[str, ...]] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        backend, sep, rest = part.partition(":")
        backend = backend.strip()
        if not sep or backend not in BACKENDS:
            raise ValueError(
                f"{part.strip()!r}: expected BACKEND: ARGS with BACKEND one of "
                f"{', '.join(BACKENDS)}, several separated by ';'"
            )
        args[backend] = args.get(backend, ()) + tuple(shlex.split(rest))
    return args


def _per_backend_path(value: str) -> Mapping[str, Path]:
    """``/venv/bin/python`` (every backend, key ``*``) or ``vllm: PATH; sglang: PATH``."""
    if ":" not in value.split("/")[0]:
        return {"*": Path(value.strip()).expanduser()}
    paths: dict[str, Path] = {}
    for backend, args in _engine_args(value).items():
        if len(args) != 1:
            raise ValueError(f"{backend}: expected one path, got {len(args)} words")
        paths[backend] = Path(args[0]).expanduser()
    return paths


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty value")
    return value.strip()


def _url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError("expected an http:// or https:// URL such as http://127.0.0.1:8000/v1")
    return value.rstrip("/")


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("expected the NAME of an environment variable (not the key itself)")
    return value


def _yes_no(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError("expected yes or no")


def _path(value: str) -> Path:
    return Path(_text(value)).expanduser()


OPTIONS: tuple[Option[Any], ...] = (
    Option("backend", "--backend",
           f"inference engine(s), comma-separated: {', '.join(BACKENDS)}",
           _list_of(_choice(*BACKENDS)), "llamacpp"),
    Option("model", "--model",
           "model alias(es) from the catalogue, comma-separated (smollm2-135m, qwen72b-gptq, "
           "...), or an engine's own id: a .gguf file, a model directory, an org/name Hugging "
           "Face id or an Ollama name:tag", _list_of(_text), "smollm2-135m"),
    Option("base_url", "--base-url",
           "attach to a running server at this URL instead of launching one (OpenAI-"
           "compatible servers: the URL ends in /v1)", _url, None),
    Option("api_key_env", "--api-key-env",
           "name of the environment variable that holds the API key", _env_name, None),
    Option("thresholds", "--thresholds", "SLO file (default: thresholds.toml in rootdir)",
           _path, None),
    Option("report", "--llmperf-report", "write the markdown report to this path", _path, None),
    Option("requests", "--llmperf-requests", "measured requests per test", _int_at_least(1),
           "32"),
    Option("warmup", "--llmperf-warmup",
           "warm-up requests before each measured window (not measured)", _int_at_least(0), "4"),
    Option("seed", "--llmperf-seed",
           "seed of the prompt order, for reproducible content (each run still gets a fresh "
           "salt at the start of every prompt, so no server cache can answer it)",
           _int_at_least(0), "0"),
    Option("max_tokens", "--llmperf-max-tokens", "output tokens asked for per request",
           _int_at_least(2), "64"),
    Option("ignore_eos", "--llmperf-ignore-eos",
           "yes: ask the server to generate exactly max-tokens (ignore_eos/min_tokens) so a "
           "short answer cannot flatter tokens/s", _yes_no, "yes"),
    Option("output_dir", "--llmperf-output-dir",
           "directory for server logs (default: llmperf-output in rootdir)", _path, None),
    Option("gpus", "--gpus",
           "GPU indices a launched engine may use (sets CUDA_VISIBLE_DEVICES), e.g. 0,1; under "
           "pytest-xdist one set per worker: 0,1|2,3", _gpu_sets, None),
    Option("tp", "--llmperf-tp",
           "tensor-parallel size (default: the catalogue's tp, at most the GPUs given)",
           _int_at_least(1), None),
    Option("max_model_len", "--llmperf-max-model-len",
           "context length a launched engine reserves KV cache for", _int_at_least(256), "4096"),
    Option("max_num_seqs", "--llmperf-max-num-seqs",
           "most requests an engine runs at once (the suite's largest user count fits)",
           _int_at_least(1), "8"),
    Option("gpu_memory_utilization", "--llmperf-gpu-memory-utilization",
           "share of each GPU's memory vLLM/SGLang/LMDeploy may take", _fraction, "0.9"),
    Option("prefix_caching", "--llmperf-prefix-caching",
           "yes: let the engine reuse cached prompt prefixes (off by default: it flatters TTFT)",
           _yes_no, "no"),
    Option("chunked_prefill", "--llmperf-chunked-prefill",
           "yes/no: force vLLM chunked prefill on or off (default: the engine's own choice)",
           _yes_no, None),
    Option("engine_args", "--llmperf-engine-args",
           "extra launch arguments per engine: 'vllm: --swap-space 4; sglang: --foo 1'",
           _engine_args, None),
    Option("llamacpp_bin", "--llamacpp-bin",
           "run this llama-server binary instead of the embedded xllamacpp engine", _path, None),
    Option("engine_python", "--llmperf-engine-python",
           "Python that runs Python engines (vLLM, SGLang, LMDeploy): PATH for all, or "
           "'vllm: PATH; sglang: PATH' (default: this interpreter)", _per_backend_path, None),
    Option("ngl", "--llmperf-ngl",
           "llama.cpp layers offloaded to the GPU (default: all when --gpus is given, else 0)",
           _int_at_least(0), None),
    Option("telemetry_interval", "--llmperf-telemetry-interval",
           "seconds between GPU/CPU telemetry samples during a measured window",
           _positive_float, "0.5"),
    Option("require_gpu", "--llmperf-require-gpu",
           "yes: SLOs on GPU metrics fail when no NVIDIA GPU can be read (default: skipped)",
           _yes_no, "no"),
    Option("ready_timeout", "--llmperf-ready-timeout",
           "seconds a launched engine may take to become ready (loading a 72B model takes "
           "minutes)", _int_at_least(1), "900"),
)


@dataclass(frozen=True)
class Settings:
    backends: tuple[str, ...]
    models: tuple[str, ...]
    base_url: str | None
    api_key_env: str | None
    thresholds: Path
    report: Path | None
    requests: int
    warmup: int
    max_tokens: int
    ignore_eos: bool
    output_dir: Path
    gpus: tuple[tuple[int, ...], ...] | None = None
    tp: int | None = None
    max_model_len: int = 4096
    max_num_seqs: int = 8
    gpu_memory_utilization: float = 0.9
    prefix_caching: bool = False
    chunked_prefill: bool | None = None
    engine_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    llamacpp_bin: Path | None = None
    engine_python: Mapping[str, Path] = field(default_factory=dict)
    ngl: int | None = None
    ready_timeout: int = 900
    seed: int = 0
    telemetry_interval: float = 0.5
    require_gpu: bool = False
    # setting name -> where its value came from, e.g. "--backend (command line)"
    sources: Mapping[str, str] = field(default_factory=dict)

    def api_key(self) -> str | None:
        """The key itself, read when needed so that it lives in no record or report."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def python_for(self, backend: str) -> str:
        """The interpreter that runs a Python engine (its own virtualenv, often)."""
        chosen = self.engine_python.get(backend) or self.engine_python.get("*")
        return str(chosen) if chosen else sys.executable

    def gpu_ids(self, env: Mapping[str, str] = os.environ) -> tuple[int, ...] | None:
        """This process's GPUs: the set for this pytest-xdist worker (gw0 takes the first)."""
        if self.gpus is None:
            return None
        worker = env.get("PYTEST_XDIST_WORKER", "gw0")
        index = int(worker[2:]) if worker[2:].isdigit() else 0
        if len(self.gpus) > 1 and index >= len(self.gpus):
            raise SettingError(
                f"{self.sources.get('gpus', '--gpus')}: {len(self.gpus)} GPU sets for "
                f"pytest-xdist worker {worker}: give one set per worker (-n {len(self.gpus)})"
            )
        return self.gpus[min(index, len(self.gpus) - 1)]


def resolve_settings(
    cli: Mapping[str, str | None],
    env: Mapping[str, str],
    ini: Mapping[str, str | None],
    rootdir: Path,
) -> Settings:
    """Resolve every option; ``cli`` and ``ini`` are keyed by :attr:`Option.name`."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        raw, source = _lookup(option, cli, env, ini)
        if raw is None:
            values[option.name], sources[option.name] = None, "default"
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as exc:
            # A key pasted where its variable's name belongs must not reach a CI log.
            shown = "(value hidden)" if option.name == "api_key_env" else repr(raw)
            raise SettingError(f"{source}: invalid value {shown}: {exc}") from None
        sources[option.name] = source
    _check_combination(values, sources, env)
    thresholds = _under(rootdir, values["thresholds"] or Path("thresholds.toml"))
    if sources["thresholds"] != "default" and not thresholds.is_file():
        raise SettingError(f"{sources['thresholds']}: thresholds file {thresholds} not found")
    optional = {name: values[name] for name in _OPTIONAL if values[name] is not None}
    return Settings(
        backends=values["backend"],
        models=values["model"],
        base_url=values["base_url"],
        api_key_env=values["api_key_env"],
        thresholds=thresholds,
        report=values["report"],
        requests=values["requests"],
        warmup=values["warmup"],
        max_tokens=values["max_tokens"],
        ignore_eos=values["ignore_eos"],
        output_dir=_under(rootdir, values["output_dir"] or Path("llmperf-output")),
        sources=sources,
        **optional,
    )


# Settings whose field keeps its own default when the option is not given.
_OPTIONAL = ("gpus", "tp", "max_model_len", "max_num_seqs", "gpu_memory_utilization",
             "prefix_caching", "chunked_prefill", "engine_args", "llamacpp_bin", "engine_python",
             "ngl", "ready_timeout", "telemetry_interval", "require_gpu", "seed")


def _lookup(
    option: Option[Any],
    cli: Mapping[str, str | None],
    env: Mapping[str, str],
    ini: Mapping[str, str | None],
) -> tuple[str | None, str]:
    if cli.get(option.name) is not None:
        return cli[option.name], f"{option.flag} (command line)"
    if env.get(option.env):
        return env[option.env], f"{option.env} (environment)"
    if ini.get(option.name):
        return ini[option.name], f"{option.ini} (ini/pyproject)"
    return option.default, "default"


def _check_combination(
    values: Mapping[str, Any], sources: Mapping[str, str], env: Mapping[str, str]
) -> None:
    backends = values["backend"]
    if "openai" in backends and not values["base_url"]:
        raise SettingError(
            f"{sources['backend']}: backend 'openai' attaches to a running server: "
            "give its URL with --base-url (or LLMPERF_BASE_URL)"
        )
    if values["base_url"] and (len(backends) > 1 or len(values["model"]) > 1):
        raise SettingError(
            f"{sources['base_url']}: --base-url attaches to one running server, so it takes "
            "one --backend and one --model"
        )
    name = values["api_key_env"]
    if name and not env.get(name):
        raise SettingError(
            f"{sources['api_key_env']}: environment variable {name} (named as holding the API "
            "key) is not set"
        )


def _under(rootdir: Path, path: Path) -> Path:
    return path if path.is_absolute() else rootdir / path

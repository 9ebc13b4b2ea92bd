"""Every llmperf option: its spellings (flag, environment, ini), its help text and the parser
that turns its text into a value.  A parser raises ``ValueError`` saying what it expected;
:func:`pytest_llmperf.config.resolve_settings` adds the value and where it came from.
This module imports nothing heavy: it runs when pytest loads the plugin.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["BACKENDS", "OPTIONS", "Option"]

BACKENDS: tuple[str, ...] = (
    "llamacpp", "transformers", "vllm", "sglang", "lmdeploy", "tgi", "ollama", "openai",
)
T = TypeVar("T")


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting: its spellings in every source, its help text and its parser."""

    name: str  # field of Settings
    flag: str  # command-line flag
    help: str
    parse: Callable[[str], T]
    default: str | None
    repeatable: bool = False  # the flag may be given several times (values joined by commas)

    @property
    def is_switch(self) -> bool:
        """A yes/no setting: the bare flag means yes."""
        return self.parse is _yes_no

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


def _run_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        raise ValueError("expected a name of letters, digits, '.', '_' or '-' (at most 64), "
                         "such as before-upgrade")
    return value


def _path(value: str) -> Path:
    return Path(_text(value)).expanduser()


def _baseline(value: str) -> str:
    """A saved run's name, ``latest``, or the path of a result document (``.json``)."""
    if value.endswith(".json"):
        return str(_path(value))
    return _run_name(value)


def _gates(value: str) -> tuple[Any, ...]:
    """Regression gates: ``tpot_ms.p95:10%,ttft_ms.p95:50ms`` (results.thresholds.Gate)."""
    from pytest_llmperf.results.thresholds import ThresholdError, parse_gate

    gates = []
    for item in _list_of(_text)(value):  # no gate holds a comma
        try:
            gates.append(parse_gate(item, "--llmperf-compare-fail"))
        except ThresholdError as exc:  # "ORIGIN: 'ITEM': what is wrong": resolve names both
            raise ValueError(f"{item!r}: {str(exc).split(': ', 2)[-1]}") from None
    return tuple(gates)


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
    Option("json", "--llmperf-json",
           "also write the run's result document (JSON) to this path (it is always written to "
           "the output directory as results.json)", _path, None),
    Option("save", "--llmperf-save",
           "keep this run in the storage directory under NAME (a new numbered file: nothing "
           "saved before is replaced)", _run_name, None),
    Option("autosave", "--llmperf-autosave",
           "yes: keep every run in the storage directory (named by its git commit)", _yes_no,
           "no"),
    Option("storage", "--llmperf-storage",
           "directory of saved runs (default: .llmperf in rootdir); list it with "
           "`python -m pytest_llmperf list`", _path, None),
    Option("compare", "--llmperf-compare",
           "compare every test with this saved run (NAME, latest, or a result document's path "
           "ending in .json): a table of changes with confidence intervals", _baseline, None),
    Option("compare_runs", "--llmperf-compare-runs",
           "pool the newest N runs saved under the --llmperf-compare name as the baseline: "
           "their spread is the run-to-run variation the comparison allows for",
           _int_at_least(1), "1"),
    Option("compare_fail", "--llmperf-compare-fail",
           "fail a test when a metric got worse than the baseline by more than a tolerance "
           "with 95 %% confidence: tpot_ms.p95:10%% or ttft_ms.p95:50ms; comma-separated or "
           "repeated", _gates, None, repeatable=True),
    Option("compare_any_hardware", "--llmperf-compare-any-hardware",
           "yes: compare with a baseline taken on other hardware (every row is labelled); by "
           "default such a baseline is refused", _yes_no, "no"),
    Option("inconclusive", "--llmperf-inconclusive",
           "what a percentile SLO whose sample is too small to support it does: fail, warn "
           "(pass, shown as inconclusive) or pass", _choice("fail", "warn", "pass"), "warn"),
    Option("repeats", "--llmperf-repeats",
           "measured windows per load (each its own window, held to the SLOs and compared "
           "together): shows the run-to-run variance", _int_at_least(1), "1"),
    Option("requests", "--llmperf-requests",
           "measured requests per test (64: enough for a p95 SLO to be conclusive)",
           _int_at_least(1), "64"),
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

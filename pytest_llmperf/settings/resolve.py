"""Settings: one immutable record, resolved once per session from the options (options.py).

Each setting is looked up command line > environment (``LLMPERF_*``) > ini/pyproject >
default.  A bad value raises :class:`SettingError` naming the value and where it came from.
This module imports nothing heavy: it runs when pytest loads the plugin.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmperf.settings.options import BACKENDS, OPTIONS, Option

if TYPE_CHECKING:
    from pytest_llmperf.results.thresholds import Gate

__all__ = ["BACKENDS", "OPTIONS", "Option", "SettingError", "Settings", "resolve_settings"]


class SettingError(ValueError):
    """A setting with a bad value; the message names the value and its source."""


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
    # --llmperf-dataset as given; parsed, and its file checked, when the session activates
    # (plugin.session.LLMPerfSession.dataset).  None: the built-in prompts.
    dataset: str | None = None
    json: Path | None = None
    save: str | None = None
    autosave: bool = False
    compare: str | None = None
    compare_runs: int = 1
    compare_fail: tuple[Gate, ...] = ()
    compare_any_hardware: bool = False
    inconclusive: str = "warn"
    repeats: int = 1
    duration: float | None = None
    request_timeout: float = 600.0
    ttft_timeout: float | None = None
    window_timeout: float = 1800.0
    strict_validity: bool = False
    client_processes: int = 1
    event_loop: str = "asyncio"
    users: tuple[int, ...] = (4,)
    rate: tuple[float, ...] = (0.5,)
    arrivals: str | None = None
    burstiness: float = 1.0
    max_concurrency: int | None = None
    ramp: float = 0.0
    capacity_budget: float = 40.0
    probe_requests: int = 12
    capacity_max_users: int = 1024
    capacity_max_rate: float = 1000.0
    storage: Path = Path(".llmperf")
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
        storage=_under(rootdir, values["storage"] or Path(".llmperf")),
        sources=sources,
        **optional,
    )


# Settings whose field keeps its own default when the option is not given.
_OPTIONAL = ("gpus", "tp", "max_model_len", "max_num_seqs", "gpu_memory_utilization",
             "prefix_caching", "chunked_prefill", "engine_args", "llamacpp_bin", "engine_python",
             "ngl", "ready_timeout", "telemetry_interval", "require_gpu", "seed", "dataset", "json",
             "save", "autosave", "compare", "compare_runs", "compare_fail",
             "compare_any_hardware",
             "inconclusive", "repeats", "duration", "request_timeout", "ttft_timeout",
             "window_timeout", "strict_validity", "client_processes", "event_loop", "users",
             "rate", "arrivals", "burstiness",
             "max_concurrency", "ramp", "capacity_budget", "probe_requests",
             "capacity_max_users", "capacity_max_rate")


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
    if values["client_processes"] > 1 and "transformers" in backends:
        raise SettingError(
            f"{sources['client_processes']}: the transformers engine runs in the test process, "
            "so its load cannot come from other processes: leave --llmperf-client-processes "
            "at 1, or run that backend on its own"
        )
    if values["event_loop"] == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise SettingError(
            f"{sources['event_loop']}: uvloop is not installed in this environment: "
            "pip install uvloop, or leave --llmperf-event-loop at asyncio"
        )
    if values["compare_fail"] and not values["compare"]:
        raise SettingError(
            f"{sources['compare_fail']}: a regression gate needs a baseline to hold the run "
            "against: give --llmperf-compare NAME (or latest) too"
        )
    first, whole = values["ttft_timeout"], values["request_timeout"]
    if first is not None and first >= whole:
        raise SettingError(
            f"{sources['ttft_timeout']}: a first-token timeout of {first:g} s never fires "
            f"before the request timeout of {whole:g} s ({sources['request_timeout']}): give "
            "a shorter one, or raise the request timeout"
        )
    arrivals, burstiness = values["arrivals"], values["burstiness"]
    if burstiness != 1.0 and arrivals in ("constant", "poisson"):
        raise SettingError(
            f"{sources['burstiness']}: a burstiness of {burstiness:g} shapes gamma arrivals, "
            f"but {sources['arrivals']} asks for {arrivals} arrivals: drop one of them"
        )
    name = values["api_key_env"]
    if name and not env.get(name):
        raise SettingError(
            f"{sources['api_key_env']}: environment variable {name} (named as holding the API "
            "key) is not set"
        )


def _under(rootdir: Path, path: Path) -> Path:
    return path if path.is_absolute() else rootdir / path

"""Settings: one immutable record of groups (settings.groups), resolved once per session from
the options (options.py).

Each setting is looked up command line > environment (``LLMPERF_*``) > ini/pyproject >
another plugin's spelling of the same setting (pytest-base-url's ``PYTEST_BASE_URL`` and ini
``base_url``) > default.  A bad value raises :class:`SettingError` naming the value and
where it came from.
This module imports nothing heavy: it runs when pytest loads the plugin.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pytest_llmperf.settings.groups import (
    CheckSettings,
    LoadSettings,
    ReportSettings,
    SearchSettings,
    ServerSettings,
    SettingError,
    Settings,
    StoreSettings,
)
from pytest_llmperf.settings.options import BACKENDS, OPTIONS, Option
from pytest_llmperf.settings.parsers import api_key_problem, redact_url, redact_urls_in

__all__ = ["BACKENDS", "OPTIONS", "Option", "SettingError", "Settings", "option_text",
           "resolve_settings", "settings_from"]

T = TypeVar("T")


def settings_from(rootdir: Path | None = None, **options: object) -> Settings:
    """Settings for a script: the defaults of every option, with ``options`` (by option name:
    ``requests=16``, ``users=[1, 2]``, ``backend="vllm"``) parsed and checked as the command
    line's are; relative paths under ``rootdir`` (default: the working directory).  The
    environment's LLMPERF_* variables are not read; the key's variable (``api_key_env=``) is."""
    names = {option.name for option in OPTIONS}
    unknown = sorted(set(options) - names)
    if unknown:
        raise SettingError(f"{unknown[0]}= (keyword argument): no such setting; settings are "
                           f"named as the options are: {', '.join(sorted(names))}")
    given = {name: option_text(value) for name, value in options.items() if value is not None}
    return resolve_settings(given, {}, {}, rootdir or Path.cwd(), given_as="keyword argument",
                            key_env=os.environ)


def option_text(value: object) -> str:
    """A keyword argument's value as an option's text: lists comma-joined, booleans yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(option_text(item) for item in value)
    return str(value)


def resolve_settings(
    cli: Mapping[str, str | None],
    env: Mapping[str, str],
    ini: Mapping[str, str | None],
    rootdir: Path,
    *,
    given_as: str = "command line",
    key_env: Mapping[str, str] | None = None,
    typed: Mapping[str, str] | None = None,
    fallback: Mapping[str, tuple[str, str]] | None = None,
) -> Settings:
    """Resolve every option; ``cli`` and ``ini`` are keyed by :attr:`Option.name`;
    ``given_as`` names where ``cli``'s values came from in messages, with the spelling each
    was typed as in ``typed`` (by name; default: the option's long-standing spelling, its
    first alias where it has one, else its flag); ``fallback`` holds, by
    name, a value and its source that count only when llmperf's own spellings give none
    (another plugin's: pytest-base-url's PYTEST_BASE_URL); the API key's variable is looked
    up in ``key_env`` (default: ``env``)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        raw, source = _lookup(option, cli, env, ini, given_as, typed or {}, fallback or {})
        sources[option.name] = source
        values[option.name] = None
        if raw is None:
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as exc:
            raise SettingError(f"{source}: invalid value {_shown(option.name, raw)}: {exc}"
                               ) from None
    _check_combination(values, sources)
    _check_api_key(values["api_key_env"], sources["api_key_env"],
                   env if key_env is None else key_env)
    thresholds = _under(rootdir, values["thresholds"] or Path("thresholds.toml"))
    if sources["thresholds"] != "default" and not thresholds.is_file():
        raise SettingError(f"{sources['thresholds']}: thresholds file {thresholds} not found")
    values.update(thresholds=thresholds,
                  output_dir=_under(rootdir, values["output_dir"] or Path("llmperf-output")),
                  storage=_under(rootdir, values["storage"] or Path(".llmperf")),
                  compare_fail=values["compare_fail"] or (),
                  engine_args=values["engine_args"] or {},
                  engine_python=values["engine_python"] or {})

    def group(kind: type[T], name: str, **extra: object) -> T:
        chosen = {option.name: values[option.name] for option in OPTIONS if name in option.groups}
        return kind(**chosen, **extra)

    return Settings(
        backends=values["backend"], models=values["model"],
        server=group(ServerSettings, "server", sources=sources),
        load=group(LoadSettings, "load", sources=sources), search=group(SearchSettings, "search"),
        checks=group(CheckSettings, "checks"), store=group(StoreSettings, "store"),
        report=group(ReportSettings, "report"), sources=sources)


def _lookup(
    option: Option[Any],
    cli: Mapping[str, str | None],
    env: Mapping[str, str],
    ini: Mapping[str, str | None],
    given_as: str,
    typed: Mapping[str, str],
    fallback: Mapping[str, tuple[str, str]],
) -> tuple[str | None, str]:
    if cli.get(option.name) is not None:
        if given_as != "command line":
            return cli[option.name], f"{option.name}= ({given_as})"
        # Not told which spelling was typed: the long-standing one (scripts use it).
        spelling = typed.get(option.name) or option.message_flag
        return cli[option.name], f"{spelling} (command line)"
    if env.get(option.env):
        return env[option.env], f"{option.env} (environment)"
    if ini.get(option.name):
        return ini[option.name], f"{option.ini} (ini/pyproject)"
    if option.name in fallback:
        return fallback[option.name]
    return option.default, "default"


def _shown(name: str, raw: str) -> str:
    """A bad value as a message shows it: never a key pasted where its variable's name
    belongs, nor a URL's credentials, query or fragment (a CI log keeps them)."""
    if name == "api_key_env":
        return "(value hidden)"
    if name in ("base_url", "metrics_url", "dcgm_url"):
        return repr(redact_url(raw))
    if name == "ab":  # its sides' URLs: no user, password, query or fragment in a message
        return repr(redact_urls_in(raw))
    return repr(raw)


def _check_combination(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    backends = values["backend"]
    if "openai" in backends and not values["base_url"]:
        raise SettingError(
            f"{sources['backend']}: backend 'openai' attaches to a running server: "
            "give its URL with --base-url (or LLMPERF_BASE_URL)"
        )
    if values["base_url"] and "," in values["base_url"] and backends != ("openai",):
        raise SettingError(
            f"{sources['base_url']}: several URLs are replicas of one OpenAI-compatible "
            "deployment: give them with --backend openai"
        )
    if values["base_url"] and (len(backends) > 1 or len(values["model"]) > 1):
        raise SettingError(
            f"{sources['base_url']}: --base-url attaches to one running server, so it takes "
            "one --backend and one --model"
        )
    own_clients = [b for b in backends if b in ("transformers", "ollama")]
    if values["endpoint"] != "chat" and own_clients:
        raise SettingError(
            f"{sources['endpoint']}: --llmperf-endpoint {values['endpoint']} is an OpenAI API "
            f"endpoint, and backend {own_clients[0]!r} is driven through its own client (chat "
            "only)"
        )
    launched = [b for b in backends if b != "openai"]
    if values["endpoint"] == "rerank" and (launched or not values["base_url"]):
        raise SettingError(
            f"{sources['endpoint']}: rerank is measured on a server the session attaches to "
            "(--backend openai --base-url URL: vLLM, llama.cpp started with --reranking, "
            f"Jina-compatible); no catalogue model is a reranker to launch on {launched[0]!r}"
            if launched else f"{sources['endpoint']}: rerank needs --base-url")
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
    if values["compare_fail"] and not values["compare"] and not values["ab"]:
        raise SettingError(
            f"{sources['compare_fail']}: a regression gate needs a baseline to hold the run "
            "against: give --llmperf-compare NAME (or latest), or --llmperf-ab, too"
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


def _check_api_key(name: str | None, source: str, env: Mapping[str, str]) -> None:
    """The variable --api-key-env names is set, and its key can go in an HTTP header.  Until
    the variable is found its name is not shown: it may be the key itself, pasted there."""
    if not name:
        return
    key = env.get(name)
    if not key:
        raise SettingError(
            f"{source}: the environment variable it names is not set or empty; its name is not "
            f"shown ({len(name)} characters), as it may be the key itself, pasted where the "
            "variable's name belongs: export the key in a variable and give that variable's "
            "name")
    problem = api_key_problem(key)
    if problem:
        raise SettingError(f"{source}: the API key in environment variable {name} {problem} "
                           "(the key is not shown)")


def _under(rootdir: Path, path: Path) -> Path:
    return path if path.is_absolute() else rootdir / path

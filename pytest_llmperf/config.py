"""Settings: one immutable record, resolved once per session.

Each setting is looked up command line > environment (``LLMPERF_*``) > ini/pyproject >
default.  A bad value raises :class:`SettingError` naming the value and where it came from.
This module imports nothing heavy: it runs when pytest loads the plugin.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["BACKENDS", "OPTIONS", "Option", "SettingError", "Settings", "resolve_settings"]

BACKENDS: tuple[str, ...] = ("llamacpp", "openai")
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
    Option("backend", "--backend", f"inference engine: {', '.join(BACKENDS)}",
           _choice(*BACKENDS), "llamacpp"),
    Option("model", "--model",
           "model alias (smollm2-135m) or a local .gguf file; with --backend openai, the "
           "model name the server knows", _text, "smollm2-135m"),
    Option("base_url", "--base-url",
           "attach to a running OpenAI-compatible server at this URL (ends in /v1)", _url, None),
    Option("api_key_env", "--api-key-env",
           "name of the environment variable that holds the API key", _env_name, None),
    Option("thresholds", "--thresholds", "SLO file (default: thresholds.toml in rootdir)",
           _path, None),
    Option("report", "--llmperf-report", "write the markdown report to this path", _path, None),
    Option("requests", "--llmperf-requests", "measured requests per test", _int_at_least(1),
           "32"),
    Option("warmup", "--llmperf-warmup",
           "warm-up requests before each measured window (not measured)", _int_at_least(0), "4"),
    Option("max_tokens", "--llmperf-max-tokens", "output tokens asked for per request",
           _int_at_least(2), "64"),
    Option("ignore_eos", "--llmperf-ignore-eos",
           "yes: ask the server to generate exactly max-tokens (ignore_eos/min_tokens) so a "
           "short answer cannot flatter tokens/s", _yes_no, "yes"),
    Option("output_dir", "--llmperf-output-dir",
           "directory for server logs (default: llmperf-output in rootdir)", _path, None),
)


@dataclass(frozen=True)
class Settings:
    backend: str
    model: str
    base_url: str | None
    api_key_env: str | None
    thresholds: Path
    report: Path | None
    requests: int
    warmup: int
    max_tokens: int
    ignore_eos: bool
    output_dir: Path
    # setting name -> where its value came from, e.g. "--backend (command line)"
    sources: Mapping[str, str] = field(default_factory=dict)

    def api_key(self) -> str | None:
        """The key itself, read when needed so that it lives in no record or report."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


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
    return Settings(
        backend=values["backend"],
        model=values["model"],
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
    )


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
    if values["backend"] == "openai" and not values["base_url"]:
        raise SettingError(
            f"{sources['backend']}: backend 'openai' attaches to a running server: "
            "give its URL with --base-url (or LLMPERF_BASE_URL)"
        )
    name = values["api_key_env"]
    if name and not env.get(name):
        raise SettingError(
            f"{sources['api_key_env']}: environment variable {name} (named as holding the API "
            "key) is not set"
        )


def _under(rootdir: Path, path: Path) -> Path:
    return path if path.is_absolute() else rootdir / path

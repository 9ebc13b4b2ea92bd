"""Settings: defaults, precedence (CLI > env > ini > default), and every validation error."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from pytest_llmperf.settings.resolve import (
    BACKENDS,
    OPTIONS,
    SettingError,
    Settings,
    resolve_settings,
)

OPTION = {option.name: option for option in OPTIONS}
# Options whose Settings field has another name (comma lists).
FIELD = {"backend": "backends", "model": "models"}
# Options about how engines are launched, left at their defaults by most tests here.
ENGINE_OPTIONS = ("gpus", "tp", "max_model_len", "max_num_seqs", "gpu_memory_utilization",
                  "prefix_caching", "chunked_prefill", "engine_args", "engine_python",
                  "llamacpp_bin", "ngl", "ready_timeout", "telemetry_interval", "require_gpu")

LOAD_OPTIONS = ("duration", "request_timeout", "ttft_timeout", "window_timeout", "strict_validity",
                "client_processes", "event_loop", "users", "rate",
                "arrivals", "burstiness", "max_concurrency", "ramp", "capacity_budget",
                "probe_requests", "capacity_max_users", "capacity_max_rate")


def option_value(settings: Settings, name: str) -> object:
    """Option ``name``'s value in the settings: a matrix option at the top level, any other in
    every group that holds it (max_tokens in server and load, output_dir in server and report),
    which must agree."""
    groups = OPTION[name].groups
    if groups == ("matrix",):
        return getattr(settings, FIELD[name])
    values = [getattr(getattr(settings, group), name) for group in groups]
    assert values and all(v == values[0] for v in values), (name, groups, values)
    return values[0]


def resolve(
    rootdir: Path,
    cli: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
    ini: Mapping[str, str | None] | None = None,
) -> Settings:
    return resolve_settings(cli or {}, env or {}, ini or {}, rootdir)


def resolve_error(
    rootdir: Path,
    cli: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
    ini: Mapping[str, str | None] | None = None,
) -> str:
    with pytest.raises(SettingError) as info:
        resolve(rootdir, cli, env, ini)
    return str(info.value)


def given(source: str, name: str, value: str) -> dict[str, dict[str, str]]:
    """Keyword arguments of resolve() that give option ``name`` = ``value`` from ``source``."""
    if source == "cli":
        return {"cli": {name: value}}
    if source == "env":
        return {"env": {OPTION[name].env: value}}
    return {"ini": {name: value}}


def spelling(source: str, name: str) -> str:
    option = OPTION[name]
    return {
        "cli": f"{option.message_flag} (command line)",
        "env": f"{option.env} (environment)",
        "ini": f"{option.ini} (ini/pyproject)",
    }[source]


# --- defaults ------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    settings = resolve(tmp_path)
    assert settings.backends == ("llamacpp",)
    assert settings.models == ("smollm2-135m",)
    assert settings.server.base_url is None
    assert settings.server.api_key_env is None
    assert settings.report.report is None
    assert settings.load.requests == 64
    assert settings.load.warmup == 4
    assert settings.load.max_tokens == settings.server.max_tokens == 64
    assert settings.server.ignore_eos is True
    assert settings.checks.thresholds == tmp_path / "thresholds.toml"
    assert settings.report.output_dir == settings.server.output_dir == tmp_path / "llmperf-output"
    assert settings.server.api_key() is None
    assert dict(settings.sources) == {option.name: "default" for option in OPTIONS}


def test_missing_default_thresholds_file_is_not_an_error(tmp_path: Path) -> None:
    assert not (tmp_path / "thresholds.toml").exists()
    assert resolve(tmp_path).checks.thresholds == tmp_path / "thresholds.toml"


def test_unset_values_fall_through(tmp_path: Path) -> None:
    """None on the command line, and empty env/ini values, count as not given."""
    settings = resolve(
        tmp_path,
        cli={"requests": None, "backend": None},
        env={"LLMPERF_REQUESTS": "", "LLMPERF_WARMUP": ""},
        ini={"requests": "", "warmup": None, "max_tokens": "16"},
    )
    assert (settings.load.requests, settings.load.warmup, option_value(settings, "max_tokens")) == (
        64, 4, 16)
    assert settings.sources["requests"] == "default"
    assert settings.sources["warmup"] == "default"
    assert settings.sources["max_tokens"] == "llmperf_max_tokens (ini/pyproject)"


def test_unrelated_environment_is_ignored(tmp_path: Path) -> None:
    settings = resolve(tmp_path, env={"REQUESTS": "7", "llmperf_requests": "7", "BACKEND": "x"})
    assert settings.load.requests == 64
    assert settings.backends == ("llamacpp",)


# --- precedence ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cli", "env", "ini", "expected"),
    [
        ("requests", "8", "16", "24", (8, 16, 24)),
        ("warmup", "0", "1", "2", (0, 1, 2)),
        ("max_tokens", "128", "256", "512", (128, 256, 512)),
        ("model", "from-cli", "from-env", "from-ini", (("from-cli",), ("from-env",),
                                                        ("from-ini",))),
        ("ignore_eos", "no", "yes", "off", (False, True, False)),
        ("backend", "openai", "llamacpp", "openai", (("openai",), ("llamacpp",), ("openai",))),
    ],
)
def test_cli_beats_env_beats_ini_beats_default(
    tmp_path: Path, name: str, cli: str, env: str, ini: str, expected: tuple[object, ...]
) -> None:
    base = {"base_url": "http://127.0.0.1:8000/v1"}  # so that backend openai is complete
    env_name = OPTION[name].env
    all_three = resolve(tmp_path, cli={name: cli, **base}, env={env_name: env}, ini={name: ini})
    assert option_value(all_three, name) == expected[0]
    assert all_three.sources[name] == f"{OPTION[name].flag} (command line)"

    env_and_ini = resolve(tmp_path, cli=base, env={env_name: env}, ini={name: ini})
    assert option_value(env_and_ini, name) == expected[1]
    assert env_and_ini.sources[name] == f"{env_name} (environment)"

    ini_only = resolve(tmp_path, cli=base, ini={name: ini})
    assert option_value(ini_only, name) == expected[2]
    assert ini_only.sources[name] == f"{OPTION[name].ini} (ini/pyproject)"

    default = resolve(tmp_path, cli=base)
    assert default.sources[name] == "default"


def test_sources_name_each_setting_separately(tmp_path: Path) -> None:
    settings = resolve(
        tmp_path,
        cli={"backend": "openai"},
        env={"LLMPERF_BASE_URL": "http://127.0.0.1:8000/v1", "LLMPERF_MODEL": "qwen"},
        ini={"model": "ignored", "requests": "5"},
    )
    assert (settings.backends, settings.server.base_url, settings.models,
            settings.load.requests) == (
        ("openai",), "http://127.0.0.1:8000/v1", ("qwen",), 5
    )
    assert dict(settings.sources) == {
        "backend": "--backend (command line)",
        "model": "LLMPERF_MODEL (environment)",
        "base_url": "LLMPERF_BASE_URL (environment)",
        "api_key_env": "default",
        "thresholds": "default",
        "report": "default",
        "html": "default",
        "ab": "default", "ab_mode": "default", "ab_rounds": "default",
        "requests": "llmperf_requests (ini/pyproject)",
        "warmup": "default",
        "dataset": "default", "trace_speed": "default", "trace_window": "default",
        "rate_stages": "default", "replica_policy": "default", "metrics_url": "default",
        "dcgm_url": "default",
        "endpoint": "default", "embedding_batch": "default", "rerank_documents": "default",
        "images": "default",
        "seed": "default",
        "json": "default",
        "save": "default",
        "autosave": "default",
        "storage": "default",
        "compare": "default",
        "compare_runs": "default",
        "compare_fail": "default",
        "compare_any_hardware": "default",
        "inconclusive": "default",
        "repeats": "default",
        **{name: "default" for name in LOAD_OPTIONS},
        "max_tokens": "default",
        "ignore_eos": "default",
        "output_dir": "default",
        **{name: "default" for name in ENGINE_OPTIONS},
    }


def test_a_bad_value_in_a_lower_source_is_never_read(tmp_path: Path) -> None:
    settings = resolve(tmp_path, cli={"requests": "3"}, env={"LLMPERF_REQUESTS": "abc"},
                       ini={"requests": "-1"})
    assert settings.load.requests == 3


# --- validation: integers ------------------------------------------------------------------


@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_requests_not_a_number_names_its_source_and_value(tmp_path: Path, source: str) -> None:
    message = resolve_error(tmp_path, **given(source, "requests", "abc"))
    assert message == (
        f"{spelling(source, 'requests')}: invalid value 'abc': expected a whole number"
    )


def test_requests_error_spellings() -> None:
    """The spellings the brief promises, written out rather than derived."""
    assert spelling("cli", "requests") == "--llmperf-requests (command line)"
    assert spelling("env", "requests") == "LLMPERF_REQUESTS (environment)"
    assert spelling("ini", "requests") == "llmperf_requests (ini/pyproject)"


@pytest.mark.parametrize(
    ("name", "value", "minimum"),
    [
        ("requests", "0", 1),
        ("requests", "-3", 1),
        ("warmup", "-1", 0),
        ("max_tokens", "1", 2),
        ("max_tokens", "0", 2),
    ],
)
@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_whole_numbers_below_their_minimum(
    tmp_path: Path, source: str, name: str, value: str, minimum: int
) -> None:
    message = resolve_error(tmp_path, **given(source, name, value))
    assert message == (
        f"{spelling(source, name)}: invalid value {value!r}: expected a whole number >= {minimum}"
    )


@pytest.mark.parametrize("value", ["1.5", "", "ten", "1e3", "0x10"])
def test_whole_numbers_refuse_other_text(tmp_path: Path, value: str) -> None:
    message = resolve_error(tmp_path, cli={"max_tokens": value})
    assert message == (
        f"--llmperf-max-tokens (command line): invalid value {value!r}: expected a whole number"
    )


def test_whole_numbers_at_their_minimum_are_accepted(tmp_path: Path) -> None:
    settings = resolve(tmp_path, cli={"requests": "1", "warmup": "0", "max_tokens": "2"})
    assert (settings.load.requests, settings.load.warmup, option_value(settings, "max_tokens")) == (
        1, 0, 2)


def test_whole_numbers_allow_surrounding_spaces(tmp_path: Path) -> None:
    assert resolve(tmp_path, ini={"requests": " 12 "}).load.requests == 12


# --- validation: choices, text, URLs -------------------------------------------------------


@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_unknown_backend_lists_the_valid_ones(tmp_path: Path, source: str) -> None:
    message = resolve_error(tmp_path, **given(source, "backend", "trt"))
    assert message == (
        f"{spelling(source, 'backend')}: invalid value 'trt': 'trt': expected one of "
        f"{', '.join(BACKENDS)}"
    )
    for backend in BACKENDS:
        assert backend in message


def test_backend_is_case_sensitive(tmp_path: Path) -> None:
    message = resolve_error(tmp_path, cli={"backend": "LlamaCpp"})
    assert "--backend (command line): invalid value 'LlamaCpp'" in message


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_model_is_refused(tmp_path: Path, value: str) -> None:
    message = resolve_error(tmp_path, cli={"model": value})
    assert message == (
        f"--model (command line): invalid value {value!r}: expected a comma-separated list "
        "with no empty items"
    )


def test_model_is_stripped(tmp_path: Path) -> None:
    assert resolve(tmp_path, ini={"model": "  qwen2.5-0.5b  "}).models == ("qwen2.5-0.5b",)


@pytest.mark.parametrize(
    "value", ["localhost:8000", "127.0.0.1:8000/v1", "ftp://host/v1", "http://", "http://a b/v1",
              "http://:8000/v1", "http://host:port/v1", "http://host:99999/v1"]
)
@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_base_url_must_be_http(tmp_path: Path, source: str, value: str) -> None:
    message = resolve_error(tmp_path, **given(source, "base_url", value))
    assert message.startswith(f"{spelling(source, 'base_url')}: invalid value {value!r}: ")
    assert "expected an http:// or https:// URL such as http://127.0.0.1:8000/v1" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
        ("https://api.example.com/v1", "https://api.example.com/v1"),
        ("http://localhost:8000", "http://localhost:8000"),
    ],
)
def test_base_url_accepted_without_trailing_slash(
    tmp_path: Path, value: str, expected: str
) -> None:
    settings = resolve(tmp_path, cli={"backend": "openai", "base_url": value})
    assert settings.server.base_url == expected


@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_openai_backend_needs_a_base_url(tmp_path: Path, source: str) -> None:
    message = resolve_error(tmp_path, **given(source, "backend", "openai"))
    assert message == (
        f"{spelling(source, 'backend')}: backend 'openai' attaches to a running server: "
        "give its URL with --base-url (or LLMPERF_BASE_URL)"
    )


def test_openai_backend_with_base_url_from_another_source(tmp_path: Path) -> None:
    settings = resolve(tmp_path, cli={"backend": "openai"},
                       ini={"base_url": "http://10.0.0.2:8000/v1"})
    assert settings.backends == ("openai",)
    assert settings.server.base_url == "http://10.0.0.2:8000/v1"
    assert settings.sources["base_url"] == "llmperf_base_url (ini/pyproject)"


# --- validation: the API key's variable ----------------------------------------------------


@pytest.mark.parametrize("value", ["sk-123abc", "sk-proj-AbC_123", "1KEY", "MY KEY", "$MY_KEY"])
@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_api_key_env_must_be_a_variable_name(tmp_path: Path, source: str, value: str) -> None:
    message = resolve_error(tmp_path, **given(source, "api_key_env", value))
    assert message.startswith(f"{spelling(source, 'api_key_env')}: invalid value ")
    assert message.endswith(
        "expected the NAME of an environment variable (not the key itself)"
    )
    assert value not in message  # a pasted key never reaches a log


@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_api_key_env_naming_an_unset_variable(tmp_path: Path, source: str) -> None:
    # The name is not shown: it may be the key itself (hf_..., gsk_... are valid names).
    message = resolve_error(tmp_path, **given(source, "api_key_env", "LLMPERF_TEST_UNSET_KEY"))
    assert message == (
        f"{spelling(source, 'api_key_env')}: the environment variable it names is not set or "
        "empty; its name is not shown (22 characters), as it may be the key itself, pasted "
        "where the variable's name belongs: export the key in a variable and give that "
        "variable's name"
    )
    assert "LLMPERF_TEST_UNSET_KEY" not in message


def test_api_key_env_naming_an_empty_variable(tmp_path: Path) -> None:
    message = resolve_error(tmp_path, cli={"api_key_env": "MY_KEY"}, env={"MY_KEY": ""})
    assert message.startswith(
        "--api-key-env (command line): the environment variable it names is not set or empty; ")
    assert "MY_KEY" not in message


def test_api_key_is_read_when_asked_and_never_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMPERF_TEST_API_KEY", "sk-first-secret")
    settings = resolve(
        tmp_path,
        cli={"backend": "openai", "base_url": "https://api.example.com/v1"},
        env={**os.environ, "LLMPERF_API_KEY_ENV": "LLMPERF_TEST_API_KEY"},
    )
    assert settings.server.api_key_env == "LLMPERF_TEST_API_KEY"
    assert settings.sources["api_key_env"] == "LLMPERF_API_KEY_ENV (environment)"
    assert settings.server.api_key() == "sk-first-secret"

    monkeypatch.setenv("LLMPERF_TEST_API_KEY", "sk-second-secret")
    assert settings.server.api_key() == "sk-second-secret"

    for text in (repr(settings), str(settings), repr(dataclasses.asdict(settings))):
        assert "secret" not in text
        assert "sk-" not in text
    for value in vars(settings).values():
        assert "secret" not in repr(value)

    monkeypatch.delenv("LLMPERF_TEST_API_KEY")
    assert settings.server.api_key() is None


def test_no_api_key_without_api_key_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-be-read")
    assert resolve(tmp_path, env=dict(os.environ)).server.api_key() is None


# --- validation: yes/no --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("yes", True), ("YES", True), (" Yes ", True), ("true", True), ("True", True),
        ("1", True), ("on", True),
        ("no", False), ("No", False), ("false", False), ("FALSE", False), ("0", False),
        ("off", False),
    ],
)
@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_ignore_eos_yes_no(tmp_path: Path, source: str, value: str, expected: bool) -> None:
    settings = resolve(tmp_path, **given(source, "ignore_eos", value))
    assert settings.server.ignore_eos is expected
    assert settings.sources["ignore_eos"] == spelling(source, "ignore_eos")


@pytest.mark.parametrize("value", ["maybe", "y", "n", "2", "enabled"])
def test_ignore_eos_refuses_other_words(tmp_path: Path, value: str) -> None:
    message = resolve_error(tmp_path, env={"LLMPERF_IGNORE_EOS": value})
    assert message == (
        f"LLMPERF_IGNORE_EOS (environment): invalid value {value!r}: expected yes or no"
    )


# --- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_explicit_thresholds_file_that_does_not_exist(tmp_path: Path, source: str) -> None:
    missing = tmp_path / "ci" / "thresholds.toml"
    message = resolve_error(tmp_path, **given(source, "thresholds", str(missing)))
    assert message == f"{spelling(source, 'thresholds')}: thresholds file {missing} not found"


def test_explicit_thresholds_that_is_a_directory(tmp_path: Path) -> None:
    message = resolve_error(tmp_path, cli={"thresholds": str(tmp_path)})
    assert message == f"--thresholds (command line): thresholds file {tmp_path} not found"


def test_explicit_thresholds_file_that_exists(tmp_path: Path) -> None:
    custom = tmp_path / "ci.toml"
    custom.write_text("[defaults]\n", encoding="utf-8")
    settings = resolve(tmp_path / "elsewhere", env={"LLMPERF_THRESHOLDS": str(custom)})
    assert settings.checks.thresholds == custom
    assert settings.sources["thresholds"] == "LLMPERF_THRESHOLDS (environment)"


def test_relative_thresholds_path_is_found_in_rootdir_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rootdir = tmp_path / "root"
    (rootdir / "ci").mkdir(parents=True)
    (rootdir / "ci" / "slo.toml").write_text("[defaults]\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = resolve(rootdir, ini={"thresholds": "ci/slo.toml"})
    assert settings.checks.thresholds == rootdir / "ci" / "slo.toml"
    assert settings.checks.thresholds.is_file()


def test_relative_thresholds_path_is_not_looked_up_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    (tmp_path / "slo.toml").write_text("[defaults]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # slo.toml is here, but not in rootdir
    message = resolve_error(rootdir, ini={"thresholds": "slo.toml"})
    assert message == (
        f"llmperf_thresholds (ini/pyproject): thresholds file {rootdir / 'slo.toml'} not found"
    )


def test_thresholds_path_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "slo.toml").write_text("[defaults]\n", encoding="utf-8")
    settings = resolve(tmp_path / "root", cli={"thresholds": "~/slo.toml"})
    assert settings.checks.thresholds == tmp_path / "slo.toml"


def test_output_dir_relative_to_rootdir_or_absolute(tmp_path: Path) -> None:
    assert option_value(resolve(tmp_path, ini={"output_dir": "out/logs"}),
                        "output_dir") == tmp_path / "out/logs"
    absolute = tmp_path / "abs"
    assert option_value(resolve(tmp_path / "root", cli={"output_dir": str(absolute)}),
                        "output_dir") == absolute


def test_report_path(tmp_path: Path) -> None:
    settings = resolve(tmp_path, cli={"report": str(tmp_path / "report.md")})
    assert settings.report.report == tmp_path / "report.md"
    assert settings.sources["report"] == "--llmperf-report (command line)"


def test_empty_path_is_refused(tmp_path: Path) -> None:
    message = resolve_error(tmp_path, cli={"report": " "})
    assert message == (
        "--llmperf-report (command line): invalid value ' ': expected a non-empty value"
    )


# --- the options themselves ----------------------------------------------------------------


def test_every_settings_field_has_one_option() -> None:
    """Each field of Settings is a group or a matrix option, and each field of a group is the
    option that names that group (an option may sit in several groups, never twice in one)."""
    top = {f.name for f in dataclasses.fields(Settings) if f.name != "sources"}
    matrix = sorted(FIELD[option.name] for option in OPTIONS if option.groups == ("matrix",))
    assert matrix == ["backends", "models"]
    defaults = resolve_settings({}, {}, {}, Path.cwd())
    fields = [(group, f.name) for group in sorted(top - set(matrix))
              for f in dataclasses.fields(getattr(defaults, group)) if f.name != "sources"]
    held = [(group, option.name) for option in OPTIONS for group in option.groups
            if group != "matrix"]
    assert sorted(fields) == sorted(held)
    assert all(option.groups for option in OPTIONS)


@pytest.mark.parametrize("attribute", ["name", "flag", "env", "ini", "dest"])
def test_no_spelling_is_used_twice(attribute: str) -> None:
    spellings = [getattr(option, attribute) for option in OPTIONS]
    duplicated = sorted({s for s in spellings if spellings.count(s) > 1})
    assert not duplicated, f"{attribute} used by more than one option: {duplicated}"


def test_spellings_follow_their_conventions() -> None:
    for option in OPTIONS:
        assert option.flag.startswith("--")
        assert option.env == "LLMPERF_" + option.name.upper()
        assert option.ini == option.dest == "llmperf_" + option.name


def test_every_default_parses() -> None:
    for option in OPTIONS:
        if option.default is not None:
            assert option.parse(option.default) is not None, option.name


def test_setting_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--llmperf-warmup"):
        resolve(tmp_path, cli={"warmup": "x"})


def test_settings_are_immutable(tmp_path: Path) -> None:
    settings = resolve(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.load.requests = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.load = settings.load  # type: ignore[misc]


def test_load_options_parse_lists_rates_and_seconds(tmp_path: Path) -> None:
    settings = resolve(tmp_path, cli={"users": "1, 4,16", "rate": "0.5,inf", "ramp": "10",
                                      "burstiness": "0.5", "duration": "30"})
    load = settings.load
    assert load.users == (1, 4, 16)
    assert load.rate == (0.5, float("inf"))
    assert (load.ramp, load.burstiness, load.duration) == (10.0, 0.5, 30.0)
    assert load.open_shape(0.5).label == "0.5 req/s gamma (burstiness 0.5)"
    assert load.closed_shape(4).label == "4 users, 10 s ramp"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("rate", "0", "'0': expected requests per second: a number > 0, or inf"),
    ("rate", "1,fast", "'fast': expected requests per second: a number > 0, or inf"),
    ("users", "4,0", "'0': expected a whole number >= 1"),
    ("burstiness", "-1", "expected a number greater than 0"),
    ("ramp", "-2", "expected a number of seconds, 0 or more"),
    ("arrivals", "uniform", "expected one of constant, poisson, gamma"),
])
def test_bad_load_options_name_the_value(tmp_path: Path, name: str, value: str,
                                         expected: str) -> None:
    with pytest.raises(SettingError) as caught:
        resolve(tmp_path, env={OPTION[name].env: value})
    assert str(caught.value) == (f"{OPTION[name].env} (environment): invalid value "
                                 f"{value!r}: {expected}")


def test_a_burstiness_cannot_shape_poisson_arrivals(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match=r"--llmperf-burstiness \(command line\): a "
                       r"burstiness of 0.5 shapes gamma arrivals, but --llmperf-arrivals "
                       r"\(command line\) asks for poisson arrivals"):
        resolve(tmp_path, cli={"burstiness": "0.5", "arrivals": "poisson"})

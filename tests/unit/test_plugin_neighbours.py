"""A good neighbour in pytest: installed beside other plugins, nothing breaks.

- pytest-base-url (which pytest-playwright and pytest-selenium bring along) registers
  ``--base-url`` too.  Whichever plugin loads first (``-p``, entry points, a conftest's
  pytest_plugins), the flag is registered once and its value is ours; pytest-base-url's
  ``PYTEST_BASE_URL`` and ini ``base_url`` count after llmperf's own spellings.
- Our other unprefixed flags became ``--llmperf-gpus``, ``--llmperf-thresholds``,
  ``--llmperf-api-key-env`` and ``--llmperf-llamacpp-bin``; the old spellings still work and
  messages name the spelling that was typed.

pytest-base-url is in the dev extra: these tests fail, not skip, without it.
"""

from __future__ import annotations

import pytest
import pytest_base_url.plugin  # noqa: F401  (the neighbour under test: must be installed)

SHOW = """
from pytest_llmperf.plugin.session import cli_options_given, resolve

NAMES = ("base_url", "gpus", "thresholds", "api_key_env", "llamacpp_bin")

def test_show(pytestconfig, base_url):
    s = resolve(pytestconfig)
    print()
    print("OURS", s.server.base_url, "FROM", s.sources["base_url"])
    print("THEIRS", base_url)
    for name in NAMES[1:]:
        print("SET", name, repr(getattr(s.server, name, None) or getattr(s.checks, name, None)),
              "FROM", s.sources[name])
    print("GIVEN", cli_options_given(pytestconfig))
"""

# pytest-base-url's fixture, for the sessions where it is not loaded.
NO_NEIGHBOUR_FIXTURE = """
import pytest

@pytest.fixture(scope="session")
def base_url():
    return "(no pytest-base-url)"
"""

URL = "http://127.0.0.1:8123/v1"
OTHER = "http://127.0.0.1:8124/v1"

# Every way the two plugins come to load, in both orders: (arguments, autoload, conftest's
# pytest_plugins).  With autoloading, -p NAME loads that entry point first; without it only
# what -p or the conftest names loads, in that order.
BOTH = {
    "entry-points": ([], True, None),
    "base-url-first": (["-p", "base_url"], True, None),
    "llmperf-first": (["-p", "llmperf"], True, None),
    "modules-base-url-first": (["-p", "pytest_base_url.plugin",
                                "-p", "pytest_llmperf.plugin.hooks"], False, None),
    "modules-llmperf-first": (["-p", "pytest_llmperf.plugin.hooks",
                               "-p", "pytest_base_url.plugin"], False, None),
    "conftest-base-url-first": ([], False, ["pytest_base_url.plugin",
                                            "pytest_llmperf.plugin.hooks"]),
    "conftest-llmperf-first": ([], False, ["pytest_llmperf.plugin.hooks",
                                           "pytest_base_url.plugin"]),
}
ONLY_OURS = {
    "blocked": (["-p", "no:base_url"], True, None),
    "not-loaded": (["-p", "pytest_llmperf.plugin.hooks"], False, None),
}


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("PYTEST_BASE_URL", "LLMPERF_BASE_URL", "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
                 "PYTEST_ADDOPTS", "LLMPERF_GPUS", "LLMPERF_THRESHOLDS", "LLMPERF_API_KEY_ENV",
                 "LLMPERF_LLAMACPP_BIN", "VERIFY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_show=SHOW)
    return pytester


def run(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        how: tuple[list[str], bool, list[str] | None], *args: str,
        subprocess: bool = False) -> pytest.RunResult:
    """pytest in ``project``, the plugins loaded as ``how`` says; in a subprocess where
    autoloading is off (an in-process run would keep this process's plugins)."""
    plugin_args, autoload, conftest_plugins = how
    loaded = ("pytest_base_url.plugin" in [*plugin_args, *(conftest_plugins or [])]
               or (autoload and "no:base_url" not in plugin_args))
    conftest = "" if loaded else NO_NEIGHBOUR_FIXTURE
    if conftest_plugins is not None:
        conftest += f"\npytest_plugins = {conftest_plugins!r}\n"
    project.makeconftest(conftest)
    if not autoload:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    full = ("-p", "no:cacheprovider", "-s", *plugin_args, *args)
    if subprocess or not autoload:
        return project.runpytest_subprocess(*full)
    return project.runpytest_inprocess(*full)


def shown(result: pytest.RunResult, label: str) -> str:
    """What the inner test printed after ``label``."""
    lines = [line for line in result.stdout.lines if line.startswith(label + " ")]
    assert lines, result.stdout.str() + result.stderr.str()
    return lines[0][len(label) + 1:]


# --- pytest-base-url loaded, before or after us ---------------------------------------------


@pytest.mark.parametrize("how", BOTH.values(), ids=BOTH.keys())
def test_help_works_and_lists_base_url_once(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    how: tuple[list[str], bool, list[str] | None],
) -> None:
    result = run(project, monkeypatch, how, "--help", subprocess=True)
    assert result.ret == 0, result.stderr.str()
    assert "conflicting option string" not in result.stderr.str()
    text = result.stdout.str()
    assert sum(line.lstrip().startswith("--base-url") for line in result.stdout.lines) == 1
    assert "base url for the application under test" in text  # pytest-base-url's own
    assert "--llmperf-base-url=BASE_URL" in text


@pytest.mark.parametrize("how", BOTH.values(), ids=BOTH.keys())
def test_base_url_is_shared_both_ways(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    how: tuple[list[str], bool, list[str] | None],
) -> None:
    result = run(project, monkeypatch, how, "--base-url", URL)
    result.assert_outcomes(passed=1)
    assert shown(result, "OURS") == f"{URL} FROM --base-url (command line)"
    assert shown(result, "THEIRS") == URL  # pytest-base-url's fixture: the same value
    # Shared, --base-url alone does not switch llmperf on (it may name a web app under test).
    assert shown(result, "GIVEN") == "False"


@pytest.mark.parametrize("how", [BOTH["entry-points"], BOTH["modules-llmperf-first"]],
                         ids=["entry-points", "modules-llmperf-first"])
def test_our_own_spelling_wins_over_the_shared_one(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    how: tuple[list[str], bool, list[str] | None],
) -> None:
    # A session of browser tests and performance tests: --base-url is the web app's.
    result = run(project, monkeypatch, how, "--base-url", OTHER, "--llmperf-base-url", URL)
    result.assert_outcomes(passed=1)
    assert shown(result, "OURS") == f"{URL} FROM --llmperf-base-url (command line)"
    assert shown(result, "THEIRS") == OTHER
    assert shown(result, "GIVEN") == "True"


@pytest.mark.parametrize(
    ("env", "ini", "args", "expected"),
    [
        ({"PYTEST_BASE_URL": URL}, "", [], f"{URL} FROM PYTEST_BASE_URL (environment)"),
        ({}, f"base_url = {URL}", [], f"{URL} FROM base_url (ini/pyproject)"),
        ({"PYTEST_BASE_URL": OTHER}, f"base_url = {OTHER}", ["--base-url", URL],
         f"{URL} FROM --base-url (command line)"),
        ({"PYTEST_BASE_URL": OTHER, "LLMPERF_BASE_URL": URL}, "", [],
         f"{URL} FROM LLMPERF_BASE_URL (environment)"),
        ({"PYTEST_BASE_URL": OTHER}, f"llmperf_base_url = {URL}", [],
         f"{URL} FROM llmperf_base_url (ini/pyproject)"),
        ({}, f"base_url = {OTHER}\nllmperf_base_url = {URL}", [],
         f"{URL} FROM llmperf_base_url (ini/pyproject)"),
        ({"LLMPERF_BASE_URL": OTHER}, "", ["--base-url", URL],
         f"{URL} FROM --base-url (command line)"),
        ({"PYTEST_BASE_URL": OTHER}, "", ["--llmperf-base-url", URL],
         f"{URL} FROM --llmperf-base-url (command line)"),
    ],
    ids=["their-env", "their-ini", "their-flag-beats-their-env-and-ini",
         "our-env-beats-theirs", "our-ini-beats-their-env", "our-ini-beats-their-ini",
         "the-flag-beats-our-env", "our-flag-beats-their-env"],
)
def test_precedence_with_pytest_base_url(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], ini: str, args: list[str], expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if ini:
        project.makeini(f"[pytest]\n{ini}\n")
    result = run(project, monkeypatch, BOTH["entry-points"], *args)
    result.assert_outcomes(passed=1)
    assert shown(result, "OURS") == expected


def test_a_bad_shared_base_url_alone_leaves_a_session_of_other_tests_alone(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    project.makepyfile(test_show="def test_browser():\n    pass\n")
    result = run(project, monkeypatch, BOTH["entry-points"], "--base-url",
                 "http://localhost:3000/app?lang=en")  # a web app's: no query is ours
    result.assert_outcomes(passed=1)
    result = run(project, monkeypatch, BOTH["entry-points"], "--llmperf-base-url",
                 "http://localhost:3000/app?lang=en")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llmperf-base-url (command line): invalid value" in result.stderr.str()


# --- pytest-base-url absent ------------------------------------------------------------------


@pytest.mark.parametrize("how", ONLY_OURS.values(), ids=ONLY_OURS.keys())
def test_without_pytest_base_url_the_flag_is_ours(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    how: tuple[list[str], bool, list[str] | None],
) -> None:
    monkeypatch.setenv("PYTEST_BASE_URL", OTHER)  # pytest-base-url's: not read without it
    helped = run(project, monkeypatch, how, "--help", subprocess=True)
    assert helped.ret == 0, helped.stderr.str()
    helped.stdout.fnmatch_lines(["*--base-url=BASE_URL*the same as --llmperf-base-url*"])
    result = run(project, monkeypatch, how)
    result.assert_outcomes(passed=1)
    assert shown(result, "OURS") == "None FROM default"
    result = run(project, monkeypatch, how, "--base-url", URL)
    result.assert_outcomes(passed=1)
    assert shown(result, "OURS") == f"{URL} FROM --base-url (command line)"
    bad = run(project, monkeypatch, how, "--base-url", "htp://x", "--backend", "openai")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--base-url (command line): invalid value" in bad.stderr.str()


def test_a_plugin_providing_base_url_late_as_pytest_playwright_does(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pytest-playwright (0.10) registers --base-url itself, after the initial conftests,
    when pytest-base-url is not in use: no clash, and its value is ours."""
    project.makepyfile(playwright_like="""
        import os
        import pytest

        @pytest.hookimpl(wrapper=True)
        def pytest_load_initial_conftests(early_config, parser):
            result = yield
            parser.addini("base_url", help="base url for the application under test.")
            parser.getgroup("playwright").addoption(
                "--base-url", metavar="url", default=os.getenv("PYTEST_BASE_URL", None),
                help="base url for the application under test.")
            return result
    """)
    how = (["-p", "no:base_url", "-p", "playwright_like"], True, None)
    monkeypatch.setenv("PYTHONPATH", str(project.path))
    helped = run(project, monkeypatch, how, "--help", subprocess=True)
    assert helped.ret == 0, helped.stderr.str()
    result = run(project, monkeypatch, how, "--base-url", URL, subprocess=True)
    result.assert_outcomes(passed=1)
    assert shown(result, "OURS") == f"{URL} FROM --base-url (command line)"
    monkeypatch.setenv("PYTEST_BASE_URL", OTHER)
    result = run(project, monkeypatch, how, subprocess=True)
    assert shown(result, "OURS") == f"{OTHER} FROM PYTEST_BASE_URL (environment)"


# --- the renamed flags and their old spellings -----------------------------------------------

RENAMED = {"gpus": ("--llmperf-gpus", "--gpus", "0,1", "((0, 1),)"),
           "thresholds": ("--llmperf-thresholds", "--thresholds", "slo.toml", None),
           "api_key_env": ("--llmperf-api-key-env", "--api-key-env", "MY_TEST_KEY",
                           "'MY_TEST_KEY'"),
           "llamacpp_bin": ("--llmperf-llamacpp-bin", "--llamacpp-bin", "bin/llama-server",
                            "PosixPath('bin/llama-server')")}


def make_llama_server(project: pytest.Pytester) -> None:
    """An executable where --llmperf-llamacpp-bin points (checked, never run, here)."""
    binary = project.mkdir("bin") / "llama-server"
    binary.write_text("#!/bin/sh\nexit 1\n")
    binary.chmod(0o755)


@pytest.mark.parametrize("name", RENAMED)
@pytest.mark.parametrize("spelling", ["new", "old"])
def test_renamed_flags_and_their_old_spellings(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str, spelling: str,
) -> None:
    new, old, value, expected = RENAMED[name]
    flag = new if spelling == "new" else old
    project.makefile(".toml", slo="[defaults]\nslo = []\n")
    make_llama_server(project)
    monkeypatch.setenv("MY_TEST_KEY", "sk-test")
    result = run(project, monkeypatch, BOTH["entry-points"], flag, value)
    result.assert_outcomes(passed=1)
    expected = expected or repr(project.path / value)
    assert shown(result, f"SET {name}") == f"{expected} FROM {flag} (command line)"
    assert shown(result, "GIVEN") == "True"  # an old spelling switches llmperf on too


@pytest.mark.parametrize("name", RENAMED)
def test_the_new_spelling_wins_over_the_old(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str,
) -> None:
    new, old, _value, _expected = RENAMED[name]
    good = {"gpus": "1", "thresholds": "good.toml", "api_key_env": "MY_TEST_KEY",
            "llamacpp_bin": "bin/llama-server"}[name]
    make_llama_server(project)
    project.makefile(".toml", good="[defaults]\nslo = []\n")
    monkeypatch.setenv("MY_TEST_KEY", "sk-test")
    result = run(project, monkeypatch, BOTH["entry-points"], old, "bad bad", new, good)
    result.assert_outcomes(passed=1)
    assert shown(result, f"SET {name}").endswith(f"FROM {new} (command line)")


@pytest.mark.parametrize("flag", ["--gpus", "--llmperf-gpus"])
def test_a_bad_value_names_the_spelling_typed(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, flag: str,
) -> None:
    result = run(project, monkeypatch, BOTH["entry-points"], f"{flag}=x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{flag} (command line): invalid value 'x'" in result.stderr.str()


def test_help_names_the_old_spellings_as_aliases(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run(project, monkeypatch, BOTH["entry-points"], "--help")
    assert result.ret == 0
    text = " ".join(result.stdout.str().split())  # help wraps where it likes
    for name, (new, old, _value, _expected) in RENAMED.items():
        assert f"{new}={name.upper()} " in text
        assert f"{old}={name.upper()} alias of {new} (its old spelling)" in text


def test_an_old_spelling_another_plugin_has_is_left_to_it(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plugin (here a conftest) that registers --gpus for itself: no clash; the old
    spelling is its, and --llmperf-gpus is ours."""
    project.makepyfile(gpus_plugin="""
        def pytest_addoption(parser):
            parser.addoption("--gpus", action="store_true", help="another plugin's --gpus")
    """)
    project.syspathinsert()
    how = (["-p", "gpus_plugin"], True, None)
    helped = run(project, monkeypatch, how, "--help")
    assert helped.ret == 0
    helped.stdout.fnmatch_lines(["*--gpus*another plugin's --gpus*"])
    result = run(project, monkeypatch, how, "--gpus", "--llmperf-gpus", "2")
    result.assert_outcomes(passed=1)
    assert shown(result, "SET gpus") == "((2,),) FROM --llmperf-gpus (command line)"


def test_only_backend_and_model_are_unprefixed() -> None:
    """Every other flag starts --llmperf-, so no plugin can clash with it; an alias is no
    other option's flag, and pytest-base-url's --base-url is the one shared alias."""
    from pytest_llmperf.settings.options import OPTIONS, SHARED

    flags = {option.flag for option in OPTIONS}
    assert {f for f in flags if not f.startswith("--llmperf-")} == {"--backend", "--model"}
    aliases = [alias for option in OPTIONS for alias in option.aliases]
    assert len(aliases) == len(set(aliases)) and not set(aliases) & flags
    assert sorted(aliases) == ["--api-key-env", "--base-url", "--gpus", "--llamacpp-bin",
                               "--thresholds"]
    assert set(SHARED) == {"--base-url"}

"""The plugin stays out of the way: in a project with no performance test it does nothing but
add its options, whatever LLMPERF_* variables are set; a perf test, or an llmperf option on the
command line, makes it check everything before any server starts."""

from __future__ import annotations

import pytest

PLAIN_TEST = """
import sys

def test_plain():
    # No engine was looked up, checked or started (the broken thresholds.toml beside this
    # file was not read either, or pytest would have stopped).
    assert "pytest_llmperf.engines.base" not in sys.modules
    assert "aiohttp" not in sys.modules
"""

PERF_TEST = """
def test_perf(llmperf_target, llmperf_load):
    raise AssertionError("must not run: the settings are bad")
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An unrelated project: one plain test, a broken thresholds.toml, LLMPERF_BACKEND=vllm
    (not installed here)."""
    pytester.makepyfile(test_plain=PLAIN_TEST)
    pytester.makefile(".toml", thresholds="[defaults]\nslo = ['no_such_metric.p95 < 1']\n")
    monkeypatch.setenv("LLMPERF_BACKEND", "vllm")
    return pytester


def test_a_session_without_perf_tests_checks_and_starts_nothing(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "vllm" not in result.stdout.str() + result.stderr.str()  # nothing was checked


def test_without_perf_tests_under_xdist_too(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    result = project.runpytest_subprocess("-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=1)


def test_a_selected_perf_test_stops_pytest_on_bad_settings_before_any_test(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_perf=PERF_TEST)
    result = project.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "thresholds.toml:2" in result.stderr.str()  # the first problem it meets
    result.stdout.no_fnmatch_line("*passed*")
    project.makefile(".toml", thresholds="[defaults]\nslo = ['tpot_ms.p95 < 100']\n")
    result = project.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "backend vllm: Python module 'vllm' is not installed" in result.stderr.str()


def test_an_llmperf_option_on_the_command_line_is_checked_even_without_perf_tests(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest_subprocess("--llmperf-requests", "zero")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llmperf-requests (command line): invalid value 'zero'" in result.stderr.str()

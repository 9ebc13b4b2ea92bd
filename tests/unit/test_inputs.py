"""Bad inputs are found early, and none is silently ignored: two-sided SLOs both apply,
misspelled [backends.X] and [tests.X] tables stop pytest before any server starts, infinite
limits and catalogue numbers are refused, naming file:line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pytest_llmperf.engines.catalog import CatalogError, entries_from_thresholds, parse_entry
from pytest_llmperf.results.thresholds import (
    ThresholdError,
    load_thresholds,
    parse_check,
    parse_gate,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "thresholds.toml"
    path.write_text(text, encoding="utf-8")
    return path


def texts(path: Path, test: str = "test_x", backend: str = "llamacpp") -> list[str]:
    checks = load_thresholds(path).for_test(backend=backend, model="m", test=test)
    return sorted(check.text for check in checks)


# --- two-sided SLOs ----------------------------------------------------------------------------


def test_both_sides_of_a_two_sided_slo_apply(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nslo = ["tpot_ms.p95 < 100", "tpot_ms.p95 > 10"]\n')
    assert texts(path) == ["tpot_ms.p95 < 100", "tpot_ms.p95 > 10"]


def test_a_scope_replaces_only_the_side_it_bounds(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nslo = ["tpot_ms.p95 < 100", "tpot_ms.p95 > 10"]\n'
                           '[tests.test_x]\nslo = ["tpot_ms.p95 <= 50"]\n'
                           '[backends.vllm]\nslo = ["tpot_ms.p95 >= 20"]\n')
    assert texts(path) == ["tpot_ms.p95 <= 50", "tpot_ms.p95 > 10"]
    assert texts(path, backend="vllm") == ["tpot_ms.p95 <= 50", "tpot_ms.p95 >= 20"]
    assert texts(path, test="test_y") == ["tpot_ms.p95 < 100", "tpot_ms.p95 > 10"]


# --- infinite and non-finite numbers -----------------------------------------------------------


@pytest.mark.parametrize("limit", ["1e999", "-1e999", "1" * 400])
def test_an_infinite_limit_is_refused(limit: str) -> None:
    with pytest.raises(ThresholdError, match=rf"thresholds.toml:3: 'tpot_ms.p95 < {limit}': "
                                             r"the limit is not a finite number"):
        parse_check(f"tpot_ms.p95 < {limit}", "thresholds.toml:3")


def test_an_infinite_limit_in_the_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nslo = [\n  "ttft_ms.p95 < 100",\n'
                           '  "tpot_ms.p95 < 1e999",\n]\n')
    with pytest.raises(ThresholdError, match=rf"^{path}:4: .*not a finite number"):
        load_thresholds(path)


def test_an_infinite_gate_tolerance_is_refused() -> None:
    with pytest.raises(ThresholdError, match="not a finite number"):
        parse_gate("tpot_ms.p95:" + "9" * 400 + "%", "--llmperf-compare-fail")
    with pytest.raises(ThresholdError, match="not a finite number"):
        parse_gate("tpot_ms.p95 regresses < " + "9" * 400 + "ms", "thresholds.toml:2")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", ["params_b", "layers", "context"])
def test_a_catalogue_number_that_is_not_finite_is_refused(key: str, value: float) -> None:
    with pytest.raises(CatalogError, match=rf"^{key}: expected a (positive|whole) number"):
        parse_entry("m", {key: value, "hf": "org/m"}, "here")


@pytest.mark.parametrize("value", ["nan", "inf", "+inf", "-nan"])
def test_a_catalogue_nan_in_thresholds_names_its_line(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f'[models.m]\nhf = "org/m"\nparams_b = {value}\n')
    with pytest.raises(ThresholdError, match=rf"^{path}:3: \[models.m\] params_b: expected a "
                                             "positive"):
        entries_from_thresholds(load_thresholds(path))


def test_a_source_bits_that_is_not_finite_is_refused() -> None:
    with pytest.raises(CatalogError, match="bits must be a number from 1 to 32"):
        parse_entry("m", {"hf": {"id": "org/m", "bits": math.nan}}, "here")


# --- misspelled scopes: stopped at collection, before any server starts ------------------------

CONFTEST = '''
import pytest

@pytest.fixture
def llmperf_load(llmperf_target):
    raise AssertionError("a test ran: a server would have started")
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite="""
        def test_concurrent_users(llmperf_target, llmperf_load):
            pass
    """)
    return pytester


def test_an_unknown_backend_table_is_an_error_naming_its_line(suite: pytest.Pytester) -> None:
    suite.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n\n'
                                       '[backends.vlm]\nslo = ["tpot_ms.p95 < 50"]\n')
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert f"{suite.path / 'thresholds.toml'}:4: [backends.vlm] names no backend" in error
    assert "did you mean vllm?" in error and "llamacpp, transformers, vllm" in error
    assert "a server would have started" not in result.stdout.str()


def test_an_unknown_test_table_is_an_error_naming_its_line(suite: pytest.Pytester) -> None:
    suite.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n\n'
                                       '[tests.test_concurent_users]\nslo = ["ttft_ms.p95 < 9"]\n')
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert (f"{suite.path / 'thresholds.toml'}:4: [tests.test_concurent_users] names no test"
            in error)
    assert "did you mean test_concurrent_users?" in error
    assert "a server would have started" not in result.stdout.str()


def test_a_test_table_may_name_a_test_of_a_file_not_collected(suite: pytest.Pytester) -> None:
    """``pytest test_suite.py`` with [tests.test_other] for a test of another file: known."""
    suite.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n\n'
                                       '[tests.test_other]\nslo = ["ttft_ms.p95 < 9"]\n'
                                       '[tests.test_in_a_class]\nslo = ["ttft_ms.p95 < 9"]\n')
    (suite.path / "sub").mkdir()
    (suite.path / "sub" / "test_more.py").write_text(
        "def test_other(llmperf_target):\n    pass\n\n"
        "class TestX:\n    async def test_in_a_class(self):\n        pass\n")
    result = suite.runpytest("test_suite.py", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()


def test_a_test_table_named_only_outside_test_files_is_unknown(suite: pytest.Pytester) -> None:
    suite.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n\n'
                                       '[tests.test_helper]\nslo = ["ttft_ms.p95 < 9"]\n')
    (suite.path / "helpers.py").write_text("def test_helper():\n    pass\n")  # no test file
    result = suite.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "[tests.test_helper] names no test" in result.stderr.str()


def test_under_xdist_the_error_reaches_the_user(suite: pytest.Pytester) -> None:
    """A worker's UsageError used to end in an INTERNALERROR without the message: each
    performance test now fails at setup with it, and no server starts."""
    suite.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n\n'
                                       '[tests.test_concurent_users]\nslo = ["ttft_ms.p95 < 9"]\n')
    result = suite.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)
    assert "[tests.test_concurent_users] names no test" in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "a server would have started" not in result.stdout.str()


def test_under_xdist_a_bad_setting_reaches_the_user(suite: pytest.Pytester,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n')
    monkeypatch.setenv("LLMPERF_REQUESTS", "abc")
    result = suite.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "LLMPERF_REQUESTS (environment): invalid value 'abc'" in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_a_server_slo_that_nothing_could_measure_is_an_error_naming_its_line(
        suite: pytest.Pytester) -> None:
    suite.makefile(".toml", thresholds='[defaults]\nslo = ["error_rate <= 0"]\n\n'
                                       '[tests.test_concurrent_users]\n'
                                       'slo = ["server[vllm:num_preemptions_total].delta <= 0"]\n')
    attached = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"]
    result = suite.runpytest(*attached)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert (f"{suite.path / 'thresholds.toml'}:5: 'server[vllm:num_preemptions_total].delta "
            "<= 0' holds a server's own metric, but backend 'openai' serves none") in error
    assert "--llmperf-metrics-url" in error
    assert "a server would have started" not in result.stdout.str()
    # With the server's metrics URL the same file is accepted, and the test runs.
    result = suite.runpytest(*attached, "--llmperf-metrics-url", "http://127.0.0.1:9/metrics")
    assert "a server would have started" in result.stdout.str()

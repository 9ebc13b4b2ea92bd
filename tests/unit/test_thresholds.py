"""thresholds.toml: parsing one SLO string, every error path (with file:line), and resolution."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_llmperf.engines.catalog import entries_from_thresholds
from pytest_llmperf.results.metrics import DISTRIBUTIONS, SCALARS
from pytest_llmperf.results.thresholds import (
    Check,
    ThresholdError,
    Thresholds,
    load_thresholds,
    parse_check,
)

REPO_THRESHOLDS = Path(__file__).resolve().parents[2] / "thresholds.toml"
ORIGIN = "thresholds.toml:7"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "thresholds.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ThresholdError) as info:
        entries_from_thresholds(load_thresholds(path))  # SLOs, then the catalogue entries
    return str(info.value)


def resolved(thresholds: Thresholds, *, backend: str = "llamacpp", model: str = "smollm2-135m",
             test: str = "test_single_user") -> dict[str, str]:
    """key -> text of the checks that apply, e.g. {"tpot_ms.p95": "tpot_ms.p95 < 100"}."""
    checks = thresholds.for_test(backend=backend, model=model, test=test)
    keys = [check.key for check in checks]
    assert len(keys) == len(set(keys)), f"one check per key, got {keys}"
    return {check.key: check.text for check in checks}


# --- parse_check: what reads ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "statistic", "operator", "limit"),
    [
        ("tpot_ms.p95 < 100", "tpot_ms", "p95", "<", 100.0),
        ("error_rate <= 0.01", "error_rate", None, "<=", 0.01),
        ("decode_tokens_per_s.mean > 10", "decode_tokens_per_s", "mean", ">", 10.0),
        ("decode_tokens_per_s.mean >= 10", "decode_tokens_per_s", "mean", ">=", 10.0),
        ("ttft_ms.p99.9 < 2.5e3", "ttft_ms", "p99.9", "<", 2500.0),
        ("ttft_ms.median < 1E3", "ttft_ms", "median", "<", 1000.0),
        ("e2el_ms.max <= 1.5e+4", "e2el_ms", "max", "<=", 15000.0),
        ("itl_ms.stdev < 5e-1", "itl_ms", "stdev", "<", 0.5),
        ("itl_ms.min > -5", "itl_ms", "min", ">", -5.0),
        ("itl_ms.min > -0.25", "itl_ms", "min", ">", -0.25),
        ("output_tokens.p0 >= +2", "output_tokens", "p0", ">=", 2.0),
        ("input_tokens.p100 < .5", "input_tokens", "p100", "<", 0.5),
        ("request_throughput >= 3.", "request_throughput", None, ">=", 3.0),
        ("completed >= 64", "completed", None, ">=", 64.0),
    ],
)
def test_parse_check_reads_metric_statistic_operator_and_limit(
    text: str, metric: str, statistic: str | None, operator: str, limit: float
) -> None:
    check = parse_check(text, ORIGIN)
    assert check.metric == metric
    assert check.statistic == statistic
    assert check.operator == operator
    assert check.limit == pytest.approx(limit)
    assert check.text == text
    assert check.origin == ORIGIN


@pytest.mark.parametrize(
    "text",
    [
        "tpot_ms.p95<100",
        "tpot_ms.p95 <100",
        "tpot_ms.p95< 100",
        "   tpot_ms.p95   <   100   ",
        "\ttpot_ms.p95\t<\t100\t",
        " tpot_ms.p95 <\n100 ",
    ],
)
def test_parse_check_accepts_any_whitespace_around_the_operator(text: str) -> None:
    check = parse_check(text, ORIGIN)
    assert (check.metric, check.statistic, check.operator, check.limit) == (
        "tpot_ms", "p95", "<", 100.0
    )
    assert check.text == text.strip()
    assert check.limit_text == "100"


@pytest.mark.parametrize(
    ("text", "operator"),
    [
        ("ttft_ms.p95<=5", "<="),
        ("ttft_ms.p95>=5", ">="),
        ("ttft_ms.p95<5", "<"),
        ("ttft_ms.p95>5", ">"),
    ],
)
def test_two_character_operators_are_not_read_as_one_character(text: str, operator: str) -> None:
    check = parse_check(text, ORIGIN)
    assert check.operator == operator
    assert check.limit == 5.0
    assert check.limit_text == "5"


def test_key_joins_metric_and_statistic() -> None:
    assert parse_check("tpot_ms.p95 < 100", ORIGIN).key == "tpot_ms.p95"
    assert parse_check("ttft_ms.p99.9 < 100", ORIGIN).key == "ttft_ms.p99.9"


def test_key_of_a_whole_run_metric_is_its_name() -> None:
    assert parse_check("error_rate <= 0.01", ORIGIN).key == "error_rate"


@pytest.mark.parametrize(
    ("text", "limit_text"),
    [
        ("tpot_ms.p95 < 100", "100"),
        ("error_rate <= 0.01", "0.01"),
        ("ttft_ms.p95 < 2.5e3", "2.5e3"),
        ("itl_ms.min > -5", "-5"),
        ("decode_tokens_per_s.mean>=10", "10"),
        ("  e2el_ms.max   <=   1e4  ", "1e4"),
    ],
)
def test_limit_text_is_the_limit_as_written(text: str, limit_text: str) -> None:
    assert parse_check(text, ORIGIN).limit_text == limit_text


# --- Check.holds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "below", "at", "above"),
    [
        ("<", True, False, False),
        ("<=", True, True, False),
        (">", False, False, True),
        (">=", False, True, True),
    ],
)
def test_holds_at_and_around_the_limit(operator: str, below: bool, at: bool, above: bool) -> None:
    check = parse_check(f"tpot_ms.p95 {operator} 100", ORIGIN)
    assert check.holds(99.999) is below
    assert check.holds(100.0) is at
    assert check.holds(100.001) is above


def test_holds_with_a_negative_limit() -> None:
    check = parse_check("itl_ms.min > -5", ORIGIN)
    assert check.holds(-4.9)
    assert not check.holds(-5.0)
    assert not check.holds(-5.1)


def test_holds_with_a_fractional_limit() -> None:
    check = parse_check("error_rate <= 0.01", ORIGIN)
    assert check.holds(0.0)
    assert check.holds(0.01)
    assert not check.holds(0.0101)


# --- parse_check: errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "tpot_ms.p95 100",
        "tpot_ms.p95 = 100",
        "tpot_ms.p95 == 100",
        "tpot_ms.p95 < 100 ms",
        "tpot_ms.p95 < ",
        "tpot_ms.p95 < abc",
        "< 100",
        "",
        "tpot_ms p95 < 100",
    ],
)
def test_unreadable_text_names_origin_text_and_expected_form(text: str) -> None:
    with pytest.raises(ThresholdError) as info:
        parse_check(text, ORIGIN)
    message = str(info.value)
    assert message.startswith(f"{ORIGIN}: cannot read SLO {text!r}")
    assert "'metric.statistic OP number'" in message
    assert "'tpot_ms.p95 < 100'" in message
    assert "<=, >=, <, >" in message


def test_unknown_metric_lists_every_valid_metric() -> None:
    with pytest.raises(ThresholdError) as info:
        parse_check("tpot.p95 < 100", ORIGIN)
    message = str(info.value)
    assert message.startswith(f"{ORIGIN}: 'tpot.p95 < 100': unknown metric 'tpot'")
    for name in (*DISTRIBUTIONS, *SCALARS):
        assert name in message
    assert "per-request metrics (use metric.statistic): ttft_ms, tpot_ms" in message
    assert "whole-run metrics: request_throughput" in message


@pytest.mark.parametrize("metric", sorted(DISTRIBUTIONS))
def test_distribution_without_statistic_says_it_needs_one(metric: str) -> None:
    text = f"{metric} < 100"
    with pytest.raises(ThresholdError) as info:
        parse_check(text, ORIGIN)
    message = str(info.value)
    assert message.startswith(f"{ORIGIN}: {text!r}: {metric} needs a statistic: valid: ")
    assert "unknown statistic" not in message
    assert "mean, median, min, max, stdev" in message
    assert "p95" in message


@pytest.mark.parametrize("statistic", ["p95x", "p101", "p1000", "average", "p", "p99.9.9", "P95"])
def test_unknown_statistic_lists_valid_statistics(statistic: str) -> None:
    text = f"tpot_ms.{statistic} < 100"
    with pytest.raises(ThresholdError) as info:
        parse_check(text, ORIGIN)
    message = str(info.value)
    assert message.startswith(f"{ORIGIN}: {text!r}: tpot_ms needs a statistic: ")
    assert f"unknown statistic {statistic!r}" in message
    assert "valid: mean, median, min, max, stdev, or a percentile p0..p100" in message
    assert "p99.9" in message


@pytest.mark.parametrize("metric", sorted(SCALARS))
def test_whole_run_metric_with_statistic_is_refused(metric: str) -> None:
    text = f"{metric}.p95 < 1"
    with pytest.raises(ThresholdError) as info:
        parse_check(text, ORIGIN)
    assert str(info.value) == (
        f"{ORIGIN}: {text!r}: {metric} is a whole-run number and takes no statistic"
    )


def test_error_rate_with_statistic_is_refused() -> None:
    with pytest.raises(ThresholdError, match=re.escape(
        "'error_rate.p95 < 1': error_rate is a whole-run number and takes no statistic"
    )):
        parse_check("error_rate.p95 < 1", ORIGIN)


def test_threshold_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot read SLO"):
        parse_check("nonsense", ORIGIN)


# --- the file: errors ----------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "thresholds.toml"
    with pytest.raises(ThresholdError) as info:
        load_thresholds(path)
    message = str(info.value)
    assert message.startswith(f"cannot read thresholds file {path}: ")
    assert "No such file or directory" in message


def test_a_directory_is_not_a_thresholds_file(tmp_path: Path) -> None:
    with pytest.raises(ThresholdError, match=re.escape(f"cannot read thresholds file {tmp_path}")):
        load_thresholds(tmp_path)


def test_malformed_toml_names_path_and_line(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        '# SLOs\n[defaults]\nslo = ["tpot_ms.p95 < 100"]\nttft = "unterminated\n\n[tests.t]\n',
    )
    path = tmp_path / "thresholds.toml"
    assert message.startswith(f"{path}:4: malformed TOML: ")
    assert "line 4" in message


def test_malformed_toml_duplicate_key_names_its_line(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        '[defaults]\nslo = ["tpot_ms.p95 < 100"]\n\n\nslo = ["ttft_ms.p95 < 100"]\n',
    )
    assert message.startswith(f"{tmp_path / 'thresholds.toml'}:5: malformed TOML: ")


def test_malformed_toml_at_end_of_document_names_the_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[defaults]\nslo = [\n  "tpot_ms.p95 < 100",\n')
    assert message.startswith(f"{tmp_path / 'thresholds.toml'}: malformed TOML: ")


def test_unknown_top_level_table_names_its_line_and_valid_tables(tmp_path: Path) -> None:
    # [model] is only made by its sub-table; the comment that mentions "model" is not it.
    message = load_error(
        tmp_path,
        '# one model table per model\n[defaults]\nslo = ["tpot_ms.p95 < 100"]\n\n'
        "[model.smollm]\nslo = []\n",
    )
    assert message == (
        f"{tmp_path / 'thresholds.toml'}:5: unknown table [model]; "
        "valid: [defaults], [backends.NAME], [models.NAME], [tests.NAME], and a top-level "
        'catalog = "FILE"'
    )


def test_unknown_top_level_table_with_its_own_header_names_that_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[defaults]\nslo = []\n[extra]\n[backend.vllm]\n')
    assert message.startswith(f"{tmp_path / 'thresholds.toml'}:4: unknown table [backend]; ")


def test_slo_outside_any_table_names_its_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, '# forgot [defaults]\nslo = ["tpot_ms.p95 < 100"]\n')
    assert message.startswith(f"{tmp_path / 'thresholds.toml'}:2: unknown table [slo]; valid: ")


def test_scope_that_is_not_a_table_names_its_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'backends = "vllm"\n\n[defaults]\nslo = []\n')
    assert message == f"{tmp_path / 'thresholds.toml'}:1: backends must be a table of tables"


def test_scope_holding_slo_directly_is_not_a_table_of_tables(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        '[defaults]\nslo = []\n\n[backends]\nslo = ["tpot_ms.p95 < 50"]\n',
    )
    assert message == f"{tmp_path / 'thresholds.toml'}:5: [backends.slo] must be a table"


def test_defaults_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, '# top\ndefaults = ["tpot_ms.p95 < 100"]\n')
    assert message == f"{tmp_path / 'thresholds.toml'}:2: [defaults] must be a table"


@pytest.mark.parametrize(
    ("text", "line", "key", "table"),
    [
        ('[defaults]\nslo = []\nslos = ["tpot_ms.p95 < 1"]\n', 3, "slos", "defaults"),
        ('[defaults]\nslo = []\n\n[tests.test_x]\nslo = []\nmax = 3\n', 6, "max", "tests.test_x"),
        ('[models."smollm2-135m"]\n\nlimit = 3\n', 3, "limit", "models.smollm2-135m"),
    ],
)
def test_unknown_key_names_key_table_and_line(
    tmp_path: Path, text: str, line: int, key: str, table: str
) -> None:
    message = load_error(tmp_path, text)
    valid = "slo" if table == "defaults" else "slo, unset"
    if table.startswith("models."):  # a model's table also holds its catalogue entry
        valid = ("context, gguf, head_dim, hf, kv_heads, layers, ollama, params_b, reasoning, "
                 "slo, tp")
    assert message == (
        f"{tmp_path / 'thresholds.toml'}:{line}: unknown key {key!r} in [{table}]; valid: {valid}"
    )


@pytest.mark.parametrize(
    "value", ['"tpot_ms.p95 < 100"', "[1, 2]", '["tpot_ms.p95 < 100", 3]', "100", "{ a = 1 }"]
)
def test_slo_must_be_a_list_of_strings(tmp_path: Path, value: str) -> None:
    message = load_error(
        tmp_path, f'[defaults]\nslo = []\n\n[backends.vllm]\n# fast\nslo = {value}\n'
    )
    assert message == (
        f"{tmp_path / 'thresholds.toml'}:6: slo in [backends.vllm] must be a list of strings "
        'such as ["tpot_ms.p95 < 100"]'
    )


def test_bad_slo_string_names_the_line_it_is_on(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        "[defaults]\n"
        "slo = [\n"
        '    "tpot_ms.p95 < 100",\n'
        '    "ttft_ms.p95 < 1000",\n'
        '    "tpot.p95 < 100",\n'
        "]\n",
    )
    assert message.startswith(
        f"{tmp_path / 'thresholds.toml'}:5: 'tpot.p95 < 100': unknown metric 'tpot'"
    )


def test_bad_slo_string_in_single_quotes_names_its_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[defaults]\n\nslo = ['error_rate.p95 < 1']\n")
    assert message == (
        f"{tmp_path / 'thresholds.toml'}:3: 'error_rate.p95 < 1': error_rate is a whole-run "
        "number and takes no statistic"
    )


def test_bad_slo_string_in_a_scope_table_names_its_line(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        '[defaults]\nslo = ["tpot_ms.p95 < 100"]\n\n'
        '[tests.test_concurrent_users]\nslo = [\n    "ttft_ms.p95 100",\n]\n',
    )
    assert message.startswith(
        f"{tmp_path / 'thresholds.toml'}:6: cannot read SLO 'ttft_ms.p95 100'"
    )


def test_same_bad_string_in_two_tables_names_the_table_being_parsed(tmp_path: Path) -> None:
    # [tests.t] comes first in the file, but [defaults] is parsed first: its line is the one.
    message = load_error(
        tmp_path,
        "[tests.t]\n"
        'slo = ["ttft_ms.p200 < 5"]\n'
        "\n"
        "[defaults]\n"
        "slo = [\n"
        '    "ttft_ms.p200 < 5",\n'
        "]\n",
    )
    assert message.startswith(f"{tmp_path / 'thresholds.toml'}:6: 'ttft_ms.p200 < 5': ")
    assert "unknown statistic 'p200'" in message


def test_same_bad_string_in_two_scope_tables_names_the_one_parsed_first(tmp_path: Path) -> None:
    # [models.m] is parsed before [tests.t] whatever the order in the file.
    message = load_error(
        tmp_path,
        "[defaults]\n"
        'slo = ["tpot_ms.p95 < 100"]\n'
        "[tests.t]\n"
        'slo = ["tpot_ms.p95 < 100", "tpot_ms < 5"]\n'
        '[models."smollm2-135m"]\n'
        "slo = [\n"
        '    "tpot_ms.p95 < 100",\n'
        '    "tpot_ms < 5",\n'
        "]\n",
    )
    assert message.startswith(f"{tmp_path / 'thresholds.toml'}:8: 'tpot_ms < 5': tpot_ms needs")


def test_a_good_string_equal_to_an_earlier_one_does_not_confuse_the_locator(
    tmp_path: Path,
) -> None:
    # The bad entry is on line 7; a comment and another table above mention similar text.
    message = load_error(
        tmp_path,
        "# e.g. \"tpot_ms.p95 < 1e\"\n"
        "[defaults]\n"
        'slo = ["tpot_ms.p95 < 100"]\n'
        "\n"
        "[backends.vllm]\n"
        "slo = [\n"
        '    "tpot_ms.p95 < 1e",\n'
        "]\n",
    )
    assert message.startswith(f"{tmp_path / 'thresholds.toml'}:7: cannot read SLO")


# --- the file: what loads ------------------------------------------------------------------


def test_empty_file_has_no_checks(tmp_path: Path) -> None:
    thresholds = load_thresholds(write(tmp_path, "# nothing yet\n"))
    assert thresholds.defaults == ()
    assert thresholds.path == tmp_path / "thresholds.toml"
    assert resolved(thresholds) == {}


def test_each_check_records_file_and_line(tmp_path: Path) -> None:
    thresholds = load_thresholds(
        write(
            tmp_path,
            "[defaults]\n"
            "slo = [\n"
            '    "tpot_ms.p95 < 100",\n'
            '    "error_rate <= 0.01",\n'
            "]\n"
            "[tests.t]\n"
            'slo = ["ttft_ms.p95 < 3000"]\n',
        )
    )
    path = tmp_path / "thresholds.toml"
    assert [(c.key, c.origin) for c in thresholds.defaults] == [
        ("tpot_ms.p95", f"{path}:3"),
        ("error_rate", f"{path}:4"),
    ]
    (test_check,) = thresholds.scoped["tests"]["t"]
    assert test_check == Check("ttft_ms", "p95", "<", 3000.0, "ttft_ms.p95 < 3000", f"{path}:7")


RESOLUTION = """
[defaults]
slo = [
    "tpot_ms.p95 < 100",
    "ttft_ms.p95 < 1000",
    "error_rate <= 0.01",
]

[backends.openai]
slo = ["tpot_ms.p95 < 200", "itl_ms.p99 < 400"]

[models."smollm2-135m"]
slo = ["tpot_ms.p95 < 50", "decode_tokens_per_s.mean >= 20"]

[models."qwen2.5-0.5b-instruct"]
slo = ["ttft_ms.p95 < 1500"]

[tests.test_concurrent_users]
slo = ["ttft_ms.p95 < 3000", "tpot_ms.p95 < 300"]
"""


@pytest.fixture
def scoped(tmp_path: Path) -> Thresholds:
    return load_thresholds(write(tmp_path, RESOLUTION))


def test_defaults_apply_when_no_scope_matches(scoped: Thresholds) -> None:
    assert resolved(scoped, backend="llamacpp", model="other", test="test_x") == {
        "tpot_ms.p95": "tpot_ms.p95 < 100",
        "ttft_ms.p95": "ttft_ms.p95 < 1000",
        "error_rate": "error_rate <= 0.01",
    }


def test_backend_scope_replaces_same_key_and_adds_new(scoped: Thresholds) -> None:
    assert resolved(scoped, backend="openai", model="other", test="test_x") == {
        "tpot_ms.p95": "tpot_ms.p95 < 200",
        "ttft_ms.p95": "ttft_ms.p95 < 1000",
        "error_rate": "error_rate <= 0.01",
        "itl_ms.p99": "itl_ms.p99 < 400",
    }


def test_model_scope_with_quoted_name_applies(scoped: Thresholds) -> None:
    assert set(scoped.scoped["models"]) == {"smollm2-135m", "qwen2.5-0.5b-instruct"}
    assert resolved(scoped, backend="llamacpp", model="smollm2-135m", test="test_x") == {
        "tpot_ms.p95": "tpot_ms.p95 < 50",
        "ttft_ms.p95": "ttft_ms.p95 < 1000",
        "error_rate": "error_rate <= 0.01",
        "decode_tokens_per_s.mean": "decode_tokens_per_s.mean >= 20",
    }
    assert resolved(scoped, backend="llamacpp", model="qwen2.5-0.5b-instruct", test="test_x")[
        "ttft_ms.p95"
    ] == "ttft_ms.p95 < 1500"


def test_model_scope_beats_backend_scope(scoped: Thresholds) -> None:
    assert resolved(scoped, backend="openai", model="smollm2-135m", test="test_x") == {
        "tpot_ms.p95": "tpot_ms.p95 < 50",
        "ttft_ms.p95": "ttft_ms.p95 < 1000",
        "error_rate": "error_rate <= 0.01",
        "itl_ms.p99": "itl_ms.p99 < 400",
        "decode_tokens_per_s.mean": "decode_tokens_per_s.mean >= 20",
    }


def test_test_scope_beats_everything(scoped: Thresholds) -> None:
    assert resolved(
        scoped, backend="openai", model="smollm2-135m", test="test_concurrent_users"
    ) == {
        "tpot_ms.p95": "tpot_ms.p95 < 300",
        "ttft_ms.p95": "ttft_ms.p95 < 3000",
        "error_rate": "error_rate <= 0.01",
        "itl_ms.p99": "itl_ms.p99 < 400",
        "decode_tokens_per_s.mean": "decode_tokens_per_s.mean >= 20",
    }


def test_resolved_checks_carry_the_origin_of_the_winning_table(scoped: Thresholds) -> None:
    checks = {
        c.key: c
        for c in scoped.for_test(
            backend="openai", model="smollm2-135m", test="test_concurrent_users"
        )
    }
    path = scoped.path
    assert checks["tpot_ms.p95"].origin == f"{path}:19"
    assert checks["tpot_ms.p95"].limit == 300.0
    assert checks["itl_ms.p99"].origin == f"{path}:10"
    assert checks["decode_tokens_per_s.mean"].origin == f"{path}:13"
    assert checks["error_rate"].origin == f"{path}:6"


def test_scopes_for_other_names_do_not_apply(scoped: Thresholds) -> None:
    defaults_only = resolved(scoped, backend="llamacpp", model="other", test="test_x")
    # Names that only resemble a scope's name are other names.
    for backend, model, test in [
        ("openai-compatible", "smollm2", "test_concurrent"),
        ("OPENAI", "SmolLM2-135M", "test_concurrent_users_2"),
        ("llamacpp", "smollm2-135m.gguf", "concurrent_users"),
    ]:
        assert resolved(scoped, backend=backend, model=model, test=test) == defaults_only


def test_a_name_is_matched_only_in_its_own_scope(tmp_path: Path) -> None:
    thresholds = load_thresholds(
        write(tmp_path, '[defaults]\nslo = ["tpot_ms.p95 < 100"]\n[tests.openai]\n'
                        'slo = ["tpot_ms.p95 < 1"]\n')
    )
    assert resolved(thresholds, backend="openai", model="openai", test="test_x") == {
        "tpot_ms.p95": "tpot_ms.p95 < 100"
    }
    assert resolved(thresholds, backend="llamacpp", model="m", test="openai") == {
        "tpot_ms.p95": "tpot_ms.p95 < 1"
    }


def test_last_entry_wins_within_one_table(tmp_path: Path) -> None:
    thresholds = load_thresholds(
        write(tmp_path, '[defaults]\nslo = ["tpot_ms.p95 < 100", "tpot_ms.p95 < 80"]\n')
    )
    assert resolved(thresholds) == {"tpot_ms.p95": "tpot_ms.p95 < 80"}


def test_different_statistics_of_one_metric_are_separate_checks(tmp_path: Path) -> None:
    thresholds = load_thresholds(
        write(
            tmp_path,
            '[defaults]\nslo = ["tpot_ms.p95 < 100", "tpot_ms.mean < 60"]\n'
            '[tests.t]\nslo = ["tpot_ms.p99 < 150"]\n',
        )
    )
    assert resolved(thresholds, test="t") == {
        "tpot_ms.p95": "tpot_ms.p95 < 100",
        "tpot_ms.mean": "tpot_ms.mean < 60",
        "tpot_ms.p99": "tpot_ms.p99 < 150",
    }


# --- the repository's own file -------------------------------------------------------------


def test_repository_thresholds_file_parses_with_the_shipped_targets() -> None:
    thresholds = load_thresholds(REPO_THRESHOLDS)
    defaults = {check.text for check in thresholds.defaults}
    assert "decode_tokens_per_s.mean >= 10" in defaults
    assert "tpot_ms.p95 < 100" in defaults
    keys = {check.key for check in thresholds.defaults}
    assert "ttft_ms.p95" in keys
    assert "error_rate" in keys
    for check in thresholds.defaults:
        assert re.fullmatch(rf"{re.escape(str(REPO_THRESHOLDS))}:\d+", check.origin)


def test_repository_thresholds_relax_ttft_for_concurrent_users() -> None:
    thresholds = load_thresholds(REPO_THRESHOLDS)
    single = resolved(thresholds, test="test_single_user")
    concurrent = resolved(thresholds, test="test_concurrent_users")
    assert parse_check(concurrent["ttft_ms.p95"], ORIGIN).limit > parse_check(
        single["ttft_ms.p95"], ORIGIN
    ).limit
    assert concurrent["tpot_ms.p95"] == single["tpot_ms.p95"] == "tpot_ms.p95 < 100"


def test_unset_drops_a_less_specific_tables_slo(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nslo = ["tpot_ms.p95 < 100", "tpot_ms.p95 > 1", '
                           '"ttft_ms.p95 < 1000"]\n\n[tests.test_x]\nunset = ["tpot_ms.p95"]\n'
                           'slo = ["tpot_ms.median < 100"]\n')
    thresholds = load_thresholds(path)
    texts = [c.text for c in thresholds.for_test(backend="vllm", model="m", test="test_x")]
    assert texts == ["ttft_ms.p95 < 1000", "tpot_ms.median < 100"]  # both sides dropped
    assert len(thresholds.for_test(backend="vllm", model="m", test="test_y")) == 3


@pytest.mark.parametrize(("unset", "message"), [
    ('"tpot_ms.p95"', "unset in [tests.test_x] must be a list of strings"),
    ('["tpot.p95"]', "'tpot.p95': unknown metric 'tpot'"),
])
def test_a_bad_unset_names_file_and_line(tmp_path: Path, unset: str, message: str) -> None:
    text = f'[defaults]\nslo = []\n\n[tests.test_x]\nunset = {unset}\n'
    error = load_error(tmp_path, text)
    assert message in error
    assert error.startswith(f"{tmp_path / 'thresholds.toml'}:5: ")

"""The Prometheus text parser (prometheus_client underneath), against hand-written expositions."""

from __future__ import annotations

import math

import pytest

from pytest_llmperf.observe.exposition import Sample, parse_exposition

TRICKY = r"""
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\F.TXT",error="Cannot find:\n\"F.TXT\""} 1.458e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
negative_infinity -Inf
not_a_number NaN
trailing_comma{a="1",} 2
colon:name:total 5
{"name.with.dots", label="x"} 7
exemplar_total{a="b"} 3 # {trace_id="abc"} 1.0
this line is not a sample
unterminated{a="b} 1
# EOF
"""


def test_parser_reads_the_text_format_with_its_corner_cases() -> None:
    parsed = parse_exposition(TRICKY)
    by_name = {s.name: s for s in parsed.samples}
    assert parsed.types["http_requests_total"] == "counter"
    assert parsed.total("http_requests_total") == 1030  # summed over label sets
    path = by_name["msdos_file_access_time_seconds"]
    assert path.labels == {"path": "C:\\DIR\\F.TXT", "error": 'Cannot find:\n"F.TXT"'}
    assert path.value == 1.458e9
    assert by_name["metric_without_timestamp_and_labels"].value == 12.47
    assert by_name["something_weird"].value == math.inf
    assert by_name["negative_infinity"].value == -math.inf
    assert math.isnan(by_name["not_a_number"].value)
    assert parsed.total("not_a_number") is None  # NaN is no number to add up
    assert by_name["trailing_comma"].labels == {"a": "1"}
    assert by_name["colon:name:total"].value == 5
    assert by_name["name.with.dots"].labels == {"label": "x"}
    assert by_name["exemplar_total"].value == 3
    assert parsed.invalid_lines == 2  # counted, not raised


def test_counters_are_found_with_and_without_total() -> None:
    parsed = parse_exposition("a_total 3\nb 4\n")
    assert parsed.counter(["a"]) == 3
    assert parsed.counter(["a_total"]) == 3
    assert parsed.counter(["b_total"]) == 4
    assert parsed.counter(["missing", "b"]) == 4  # the first alternative present wins
    assert parsed.counter(["missing"]) is None


def test_histograms_give_sum_and_count_over_label_sets() -> None:
    parsed = parse_exposition(
        'h_bucket{le="0.1",model="a"} 1\nh_bucket{le="+Inf",model="a"} 2\n'
        'h_sum{model="a"} 0.3\nh_count{model="a"} 2\nh_sum{model="b"} 0.7\nh_count{model="b"} 3\n'
    )
    found = parsed.histogram(["nope", "h"])
    assert found is not None
    assert found[0] == pytest.approx(1.0)
    assert found[1] == 5
    assert parsed.histogram(["nope"]) is None


CLEAN = (
    "# HELP x_total Things.\n# TYPE x_total counter\n"
    'x_total{a="1"} 3\nx_total{a="2"} 4\n'
    "# TYPE y counter\ny 5\n"  # prometheus_client names this sample y_total
    "# TYPE h histogram\n"
    'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.5\nh_count 2\n'
    "# TYPE g gauge\n"
    'g{note="a\u2028b"} 0.25\n'  # a line separator inside a label value is no line end
)


@pytest.mark.parametrize("bad", ["this line is not a sample", 'x_total{a="3"} three',
                                 "# TYPE z", "{} 1"])
def test_one_bad_line_costs_only_that_line(bad: str) -> None:
    clean = parse_exposition(CLEAN)
    assert clean.invalid_lines == 0
    for at in range(CLEAN.count("\n") + 1):  # wherever the bad line is
        lines = CLEAN.split("\n")
        lines.insert(at, bad)
        parsed = parse_exposition("\n".join(lines))
        # Read line by line, yet named as in the whole-text parse.
        assert parsed.samples == clean.samples
        assert parsed.types == clean.types
        assert parsed.invalid_lines == 1


def test_counters_are_found_however_their_family_is_typed() -> None:
    parsed = parse_exposition(CLEAN)
    assert parsed.counter(["x"]) == parsed.counter(["x_total"]) == 7
    assert parsed.counter(["y"]) == parsed.counter(["y_total"]) == 5
    assert parsed.types["x_total"] == parsed.types["y"] == "counter"
    assert parsed.types["h"] == "histogram"
    assert parsed.histogram(["h"]) == (0.5, 2)
    assert parsed.gauge(["g"]) == 0.25
    assert parsed.samples[-1] == Sample("g", {"note": "a\u2028b"}, 0.25, "g")


def test_openmetrics_text() -> None:
    parsed = parse_exposition(
        "# TYPE requests counter\n# UNIT requests requests\n# HELP requests Requests.\n"
        'requests_total{code="200"} 10 1.7e9 # {trace_id="a b"} 1.0 1.7e9\n'
        'requests_created{code="200"} 1.7e9\n'
        "# TYPE latency_seconds histogram\n"
        'latency_seconds_bucket{le="0.5"} 1 # {trace_id="c"} 0.4\n'
        'latency_seconds_bucket{le="+Inf"} 3\nlatency_seconds_sum 2.5\nlatency_seconds_count 3\n'
        "# EOF\n"
    )
    assert parsed.invalid_lines == 0
    assert parsed.counter(["requests"]) == 10
    assert parsed.histogram(["latency_seconds"]) == (2.5, 3)
    assert all(isinstance(s.value, float) for s in parsed.samples)


def test_empty_text() -> None:
    assert parse_exposition("") == parse_exposition("\n\n# EOF\n") == parse_exposition(" \n")
    assert parse_exposition("").samples == ()

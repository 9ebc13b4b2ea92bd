"""Property tests of the parsers of untrusted input: SSE, Ollama's NDJSON, Prometheus text and
thresholds.toml.

A server under load, a metrics page or a hand-edited file can hold anything, and each parser
promises one way of failing: the SSE parser raises only UnicodeDecodeError (the OpenAI client
turns it into the record's error), the OpenAI and Ollama stream readers turn every failure into
the record's ``error`` with a kind (and what they record survives the completeness rule and
strict JSON), the exposition parser counts unreadable lines and raises nothing, and the thresholds
parser raises only ThresholdError (which names file:line; anything else is a traceback at
session start).  Arbitrary input checks that promise; generated well-formed input checks that
what was written is what is read back, however the network splits the bytes.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.ollama import NDJSONLines, _Answer
from pytest_llmperf.clients.openai_stream import OpenAIStream, stream_record
from pytest_llmperf.clients.sse import SSEEvent, SSEParser
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.observe.exposition import parse_exposition
from pytest_llmperf.results.errors import ERROR_KINDS
from pytest_llmperf.results.metrics import (
    CAPACITY,
    DISTRIBUTIONS,
    RESOURCES,
    SCALARS,
    metric_info,
    summarize,
)
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.record_codec import run_to_json
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.results.thresholds import (
    COMPARABLE,
    ThresholdError,
    parse_check,
    parse_gate,
    parse_thresholds,
)

PATH = Path("thresholds.toml")
ORIGIN = "thresholds.toml:3"


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, so any list of ints works)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


cuts = st.lists(st.integers(0, 10**6), max_size=12)
# Text that survives UTF-8 (no lone surrogates).
utf8_text = st.text(st.characters(codec="utf-8"), max_size=40)


# --- SSE ---------------------------------------------------------------------------------------


def sse_events(chunks: list[bytes]) -> list[SSEEvent] | str:
    """Every event of a stream fed in ``chunks``, or "undecodable" when the parser raised its one
    documented error."""
    parser = SSEParser()
    events: list[SSEEvent] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
        return events + parser.close()
    except UnicodeDecodeError:
        return "undecodable"


# Random bytes seldom spell a field name; these pieces do, and bring every line ending and
# broken UTF-8 (a lone continuation byte, a character cut short) along.
sse_pieces = st.sampled_from([
    b"data:", b"data: ", b"event:", b"event: x", b"id: 1", b":", b": ping", b" ", b"x", b"{}",
    b"\r", b"\n", b"\r\n", b"\n\n", "é".encode(), "€".encode()[:2], b"\x80", b"\xff", b"\x00",
])
sse_bytes = st.lists(sse_pieces, max_size=40).map(b"".join) | st.binary(max_size=120)


@settings(database=None, deadline=None, max_examples=400)
@given(sse_bytes, cuts)
def test_sse_any_bytes_raise_only_unicode_errors_and_splits_do_not_matter(
    data: bytes, at: list[int]
) -> None:
    # Any other exception escapes sse_events and fails the test; the same bytes must read the
    # same (or fail the same way) whether one network read brought them or many.
    assert sse_events(split(data, at)) == sse_events([data])


@settings(database=None, deadline=None, max_examples=300)
@given(st.text(st.characters(codec="utf-8"), max_size=120), cuts)
def test_sse_valid_utf8_never_raises(text: str, at: list[int]) -> None:
    # Cuts fall inside multi-byte characters too: bytes wait for their line's end.
    events = sse_events(split(text.encode("utf-8"), at))
    assert events != "undecodable"


# One event: optional name, one or more data lines, comments mixed in; no CR or LF inside a
# value (U+2028 and U+0085 are kept: only CR and LF end an SSE line).
line_value = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=15)
sse_event = st.tuples(st.none() | line_value, st.lists(line_value, min_size=1, max_size=4),
                      st.booleans())
line_end = st.sampled_from(["\n", "\r\n", "\r"])


@settings(database=None, deadline=None, max_examples=300)
@given(st.lists(st.tuples(sse_event, line_end), max_size=6), st.booleans(), cuts)
def test_sse_well_formed_stream_reads_back_as_written(
    written: list[tuple[tuple[str | None, list[str], bool], str]], last_unterminated: bool,
    at: list[int],
) -> None:
    text, expected, end = "", [], ""
    for (name, data, comment), end in written:
        if comment:
            text += f": keep-alive{end}"
        if name is not None:
            text += f"event: {name}{end}"
        text += "".join(f"data: {value}{end}" for value in data) + end
        expected.append(SSEEvent("\n".join(data), name or "message"))
    if last_unterminated and text:
        # A last event without its blank line still counts when the stream ends (close()).
        text = text[: -len(end)]
    assert sse_events(split(text.encode("utf-8"), at)) == expected


# --- Ollama NDJSON -----------------------------------------------------------------------------


@settings(database=None, deadline=None, max_examples=300)
@given(st.lists(st.sampled_from([b"\n", b"\r\n", b" ", b"{}", b"x", b"\xe2\x82"]), max_size=30)
       .map(b"".join) | st.binary(max_size=100), cuts)
def test_ndjson_lines_are_the_same_however_the_bytes_are_split(data: bytes, at: list[int]) -> None:
    lines = NDJSONLines()
    got = [line for chunk in split(data, at) for line in lines.feed(chunk)]
    *whole, rest = data.split(b"\n")
    assert got == [line for line in whole if line.strip()]  # blank lines are keep-alives
    assert lines.close() == rest


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | utf8_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(utf8_text, inner, max_size=3),
    max_leaves=8,
)
# What Ollama sends, what it might send wrongly (a count that is not a number, a non-object
# line), and what no JSON reader takes.
ollama_objects = st.fixed_dictionaries(
    {},
    optional={
        "message": st.fixed_dictionaries({}, optional={"content": json_values | utf8_text,
                                                        "thinking": json_values | utf8_text}),
        "done": st.booleans() | json_values,
        "done_reason": st.sampled_from(["stop", "length"]) | json_values,
        "eval_count": st.integers(0, 10**6) | json_values,
        "prompt_eval_count": st.integers(0, 10**6) | json_values,
        "eval_duration": st.integers(0, 10**12) | json_values,
        "error": json_values,
    },
)
ollama_line = (ollama_objects.map(lambda obj: json.dumps(obj).encode())
               | json_values.map(lambda value: json.dumps(value).encode())
               | st.binary(max_size=30).filter(lambda raw: b"\n" not in raw))


@settings(database=None, deadline=None, max_examples=400)
@given(st.lists(ollama_line, max_size=6), st.booleans(), cuts)
@example([b"[" * 5000], True, [])  # nested past the interpreter's recursion limit
@example([b'{"done": true, "eval_count": "x"}'], False, [])  # a final count that is no number
def test_ollama_stream_turns_any_input_into_an_error_not_an_exception(
    written: list[bytes], newline_at_end: bool, at: list[int]
) -> None:
    data = b"\n".join(written) + (b"\n" if newline_at_end else b"")
    answer, lines = _Answer(), NDJSONLines()
    for read, chunk in enumerate(split(data, at), start=1):
        answer.read(lines.feed(chunk), now_ns=read * 1_000)
    answer.close(lines.close(), now_ns=10**6)
    record = answer.record(request_id=0, send_ns=0)
    # Every stream ends with the server's final object or with the reason it did not (or both:
    # bytes after the final object without a newline are still reported).
    assert record.error is not None or answer.final is not None
    assert record.error is None or isinstance(record.error, str)
    assert list(record.chunk_ns) == sorted(record.chunk_ns)


@settings(database=None, deadline=None, max_examples=300)
@given(st.binary(max_size=40).filter(lambda raw: raw.strip() != b"" and b"\n" not in raw))
def test_ollama_line_no_json_reader_takes_is_the_streams_error(line: bytes) -> None:
    try:
        json.loads(line.decode("utf-8"))  # as the client reads a line
    except ValueError:  # UnicodeDecodeError included
        pass
    else:
        return  # readable JSON: other properties cover it
    answer = _Answer()
    answer.read([line], now_ns=1)
    assert answer.error is not None
    assert answer.error.startswith(("malformed stream line", "stream line is not valid UTF-8"))


def assert_a_sound_record(record: RequestRecord) -> None:
    """What a stream reader recorded, whatever the server sent: after the tokenizer step and
    the completeness rule, a record with a kind for its failure, a string finish_reason,
    counts that are numbers, and nothing strict JSON refuses."""
    for forced in (None, 8):
        [counted] = count_missing_tokens([record], None)
        judged = judge(counted, forced)
        assert judged.error is None or (isinstance(judged.error, str)
                                        and judged.error_kind in ERROR_KINDS), judged
        assert judged.finish_reason is None or isinstance(judged.finish_reason, str)
        assert isinstance(judged.output_tokens, int) and judged.output_tokens >= 0
        window = LoadRun((judged,), 0, 1, 1, 0)
        json.dumps(run_to_json(window), allow_nan=False)
        summarize(window)  # no count so large that the metrics' floats overflow


@settings(database=None, deadline=None, max_examples=400)
@given(st.lists(ollama_line, max_size=6), st.booleans(), cuts)
@example([b'{"done": true, "done_reason": 5}'], True, [])  # no string: judge() lower()s it
@example([b'{"done": true, "eval_duration": Infinity}'], True, [])
@example([b'{"done": true, "eval_count": 1%s, "eval_duration": 1%s}' % (b"0" * 400, b"0" * 400)],
         True, [])  # counts no float holds
def test_ollama_records_survive_the_completeness_rule_and_strict_json(
    written: list[bytes], newline_at_end: bool, at: list[int]
) -> None:
    data = b"\n".join(written) + (b"\n" if newline_at_end else b"")
    answer, lines = _Answer(), NDJSONLines()
    for read, chunk in enumerate(split(data, at), start=1):
        answer.read(lines.feed(chunk), now_ns=read * 1_000)
    answer.close(lines.close(), now_ns=10**6)
    assert_a_sound_record(answer.record(request_id=0, send_ns=0))


# --- OpenAI-style SSE chunks -------------------------------------------------------------------

# What an OpenAI-compatible server sends, and the same fields holding any JSON value instead.
openai_text = (utf8_text | json_values
               | st.lists(st.fixed_dictionaries({"type": st.just("text") | json_values,
                                                 "text": utf8_text | json_values}), max_size=2))
openai_choice = st.fixed_dictionaries({}, optional={
    "index": st.integers(0, 3) | json_values,
    "delta": st.fixed_dictionaries({}, optional={
        "role": st.just("assistant") | json_values, "content": openai_text,
        "reasoning_content": openai_text, "reasoning": openai_text}) | json_values,
    "text": openai_text,
    "finish_reason": st.sampled_from(["stop", "length", "abort", "error"]) | json_values,
}) | json_values
openai_count = st.integers(-3, 10**6) | json_values
openai_objects = st.fixed_dictionaries({}, optional={
    "choices": st.lists(openai_choice, max_size=3) | json_values,
    "usage": st.fixed_dictionaries({}, optional={
        "completion_tokens": openai_count, "prompt_tokens": openai_count,
        "completion_tokens_details": st.fixed_dictionaries(
            {}, optional={"reasoning_tokens": openai_count}) | json_values,
        "prompt_tokens_details": st.fixed_dictionaries(
            {}, optional={"cached_tokens": openai_count}) | json_values}) | json_values,
    "timings": st.dictionaries(utf8_text, json_values | st.floats(), max_size=3) | json_values,
    "error": json_values,
})
openai_data = (openai_objects.map(json.dumps) | json_values.map(json.dumps)
               | st.just("[DONE]") | utf8_text.map(lambda text: " ".join(text.splitlines())))


@settings(database=None, deadline=None, max_examples=500)
@given(st.lists(openai_data, max_size=6), cuts)
@example(['{"choices": [{"delta": "x"}]}'], [])
@example(['{"choices": 5}', '{"timings": [1, 2]}'], [])
@example(['{"choices": [{"delta": {"content": [{"type": "text", "text": "a"}]}}]}'], [])
@example(['{"timings": {"t": NaN}, "choices": [{"finish_reason": "stop"}]}'], [])
@example(['{"choices": [{"delta": {"content": "a"}, "finish_reason": "stop"}], "usage": '
          '{"completion_tokens": 1' + "0" * 400 + ', "prompt_tokens": 1' + "0" * 400 + '}}'], [])
@example(['{"usage": {"completion_tokens": 1, "completion_tokens_details": '
          '{"reasoning_tokens": -1}}, "choices": [{"finish_reason": 1}]}'], [])
def test_openai_stream_turns_any_json_into_an_error_not_an_exception(
    written: list[str], at: list[int]
) -> None:
    wire = "".join(f"data: {data}\n\n" for data in written).encode("utf-8")
    stream, parser = OpenAIStream(), SSEParser()
    for read, chunk in enumerate(split(wire, at), start=1):
        stream.read(parser.feed(chunk), now_ns=read * 1_000)
    stream.read(parser.close(), now_ns=10**6)
    assert stream.events == len(written)  # every event was read, none lost to a failure
    # The last resort of read() (an exception no shape check foresaw) never had to act.
    assert not (stream.error or "").startswith("unreadable stream chunk"), stream.error
    record = stream_record(0, Prompt("hi"), 8, 0, stream)
    assert list(record.chunk_ns) == sorted(record.chunk_ns)
    assert_a_sound_record(record)


# --- Prometheus text exposition ----------------------------------------------------------------

exposition_pieces = st.sampled_from([
    "# TYPE ", "# HELP ", "# UNIT ", "# EOF", "counter", "gauge", "histogram", "summary", "info",
    "m", "m_total", "m_bucket", "m_sum", "m_count", "m_created", '"m.dots"', "{", "}", "=", ",",
    '"', "\\", "le", "quantile", " ", "\n", "\t", "1", "-2.5e3", "+Inf", "-Inf", "NaN", "#",
    " # {", "\u2028", "\x00", "é",
])
exposition_text = st.lists(exposition_pieces, max_size=50).map("".join) | st.text(max_size=80)


@settings(database=None, deadline=None, max_examples=400)
@given(exposition_text)
def test_exposition_any_text_is_counted_not_raised(text: str) -> None:
    parsed = parse_exposition(text)
    assert 0 <= parsed.invalid_lines <= text.count("\n") + 1
    assert all(isinstance(sample.value, float) for sample in parsed.samples)


def prom_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def prom_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# Names made unique by their index and never ending in a suffix (_sum, _total, ...) that
# prometheus_client reads as part of another family.
family_name = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
label_name = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
label_sets = st.dictionaries(label_name, utf8_text, max_size=3)
family = st.tuples(family_name, st.sampled_from(["gauge", "counter"]), utf8_text,
                   st.lists(st.tuples(label_sets, st.floats(), st.booleans()),
                            min_size=1, max_size=4))


@settings(database=None, deadline=None, max_examples=300)
@given(st.lists(family, max_size=4))
def test_exposition_well_formed_text_reads_back_as_written(
    families: list[tuple[str, str, str, list[tuple[dict[str, str], float, bool]]]],
) -> None:
    lines: list[str] = []
    expected: list[tuple[str, dict[str, str], float]] = []
    for index, (base, kind, help_text, samples) in enumerate(families):
        name = f"{base}_{index}" + ("_total" if kind == "counter" else "")
        help_escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        lines += [f"# HELP {name} {help_escaped}", f"# TYPE {name} {kind}"]
        for labels, value, timestamped in samples:
            body = ",".join(f'{key}="{prom_label_value(val)}"' for key, val in labels.items())
            stamp = " 1395066363000" if timestamped else ""
            lines.append(f"{name}{{{body}}} {prom_value(value)}{stamp}")
            expected.append((name, labels, value))
    parsed = parse_exposition("\n".join(lines) + "\n")
    assert parsed.invalid_lines == 0
    got = [(s.name, dict(s.labels), s.value) for s in parsed.samples]
    assert len(got) == len(expected)
    for (name, labels, value), (got_name, got_labels, got_value) in zip(expected, got, strict=True):
        assert (got_name, got_labels) == (name, labels)
        assert got_value == value or (math.isnan(value) and math.isnan(got_value))
    for index, (base, kind, _, _) in enumerate(families):
        assert parsed.types[f"{base}_{index}"] == kind  # a counter also under its _total name


# --- thresholds --------------------------------------------------------------------------------

METRICS = [*DISTRIBUTIONS, *SCALARS, *RESOURCES, *CAPACITY]
threshold_pieces = st.sampled_from([
    *METRICS[:4], "error_rate", "gpu_util_mean", "nosuch", ".", "p95", "p99.9", "p101", "mean",
    "stdev", " ", "<", "<=", ">", ">=", "=", "1", "-2.5e3", "1e999", ".5", "%", "ms", "tok/s",
    ":", " regresses ", "\t", "\n", "é", "\x00",
])
threshold_text = st.lists(threshold_pieces, max_size=12).map("".join) | st.text(max_size=40)


@settings(database=None, deadline=None, max_examples=500)
@given(threshold_text)
def test_threshold_entry_any_text_raises_only_threshold_error(text: str) -> None:
    for parse in (parse_check, parse_gate):
        try:
            parse(text, ORIGIN)
        except ThresholdError as exc:
            assert str(exc).startswith(ORIGIN)  # every error names file:line


percentiles = st.builds(lambda whole, frac: f"p{whole}{frac}", st.integers(0, 99),
                        st.sampled_from(["", ".9", ".99", ".5"])) | st.just("p100")
statistics = st.sampled_from(["mean", "median", "min", "max", "stdev"]) | percentiles
limits = st.floats(allow_nan=False, allow_infinity=False)
space = st.sampled_from(["", " ", "  ", "\t"])


@settings(database=None, deadline=None, max_examples=400)
@given(st.sampled_from(METRICS), statistics, st.sampled_from(["<", "<=", ">", ">="]), limits,
       space, space, space)
def test_threshold_check_reads_back_as_written(
    metric: str, stat: str, op: str, limit: float, before: str, middle: str, after: str
) -> None:
    statistic = stat if metric in DISTRIBUTIONS else None  # whole-run numbers take none
    key = f"{metric}.{statistic}" if statistic else metric
    text = f"{before}{key}{middle}{op}{middle}{limit!r}{after}"
    check = parse_check(text, ORIGIN)
    assert (check.metric, check.statistic, check.operator, check.limit) == (
        metric, statistic, op, limit)
    assert (check.key, check.text, check.origin) == (key, text.strip(), ORIGIN)
    assert float(check.limit_text) == limit


GATE_METRICS = [m for m in METRICS if m not in SCALARS or m in COMPARABLE]
amounts = st.builds(lambda whole, frac: f"{whole}{frac}", st.integers(0, 10**6),
                    st.sampled_from(["", ".", ".5", ".25", ".125"]))


@settings(database=None, deadline=None, max_examples=400)
@given(st.sampled_from(GATE_METRICS),
       st.sampled_from(["mean", "median"]) | percentiles,
       amounts, st.booleans(), st.booleans())
def test_threshold_gate_reads_back_as_written(
    metric: str, stat: str, amount: str, relative: bool, cli: bool
) -> None:
    statistic = stat if metric in DISTRIBUTIONS else None
    key = f"{metric}.{statistic}" if statistic else metric
    unit = "%" if relative else metric_info(metric).unit
    text = f"{key}:{amount}{unit}" if cli else f"{key} regresses < {amount}{unit}"
    gate = parse_gate(text, ORIGIN)
    # A metric measured in % (GPU utilisation) reads "5%" as relative too: one meaning of "%".
    is_relative = unit == "%"
    assert (gate.metric, gate.statistic, gate.relative, gate.key) == (
        metric, statistic, is_relative, key)
    assert gate.tolerance == (float(amount) / 100.0 if is_relative else float(amount))


toml_pieces = st.sampled_from([
    "[defaults]", "[tests.t]", "[backends.vllm]", '[models."m"]', "[models]", "[other]",
    "slo = ", "catalog = ", '"models.toml"', '["ttft_ms.p95 < 1"]',
    '["tpot_ms.p95 regresses < 5%"]', '["errors.timeout <= 0"]', '["bad"]', "[1]", "[", "]",
    "=", '"', "'", "x", "1", "{", "}", "\n", " ", "#", "\\", "\r",
    "\x00", "[[defaults]]", "tests = 1", "defaults.slo = []",
])
toml_text = st.lists(toml_pieces, max_size=25).map("".join) | st.text(max_size=60)


@settings(database=None, deadline=None, max_examples=400)
@given(toml_text)
@example("a = " + "1" * 5000)  # Python refuses to read ints of over 4300 digits
@example("a = " + "[" * 5000 + "]" * 5000)  # nested past the interpreter's recursion limit
def test_thresholds_any_text_raises_only_threshold_error(text: str) -> None:
    try:
        parse_thresholds(text, PATH)
    except ThresholdError as exc:
        assert str(exc).startswith(str(PATH))  # the file (and line where known) first


@settings(database=None, deadline=None, max_examples=200)
@given(st.dictionaries(st.sampled_from(METRICS), st.tuples(statistics, limits), max_size=5),
       st.from_regex(r"test_[a-z0-9_]{0,10}", fullmatch=True))
def test_thresholds_well_formed_file_reads_back_as_written(
    written: dict[str, tuple[str, float]], test_name: str
) -> None:
    entries = [f"{m}.{stat} <= {limit!r}" if m in DISTRIBUTIONS else f"{m} <= {limit!r}"
               for m, (stat, limit) in written.items()]
    slo = "[" + ", ".join(json.dumps(entry) for entry in entries) + "]"
    text = f"[defaults]\nslo = {slo}\n\n[tests.{test_name}]\nslo = {slo}\n"
    thresholds = parse_thresholds(text, PATH)
    assert [check.text for check in thresholds.defaults] == entries
    assert [check.limit for check in thresholds.defaults] == [lim for _, lim in written.values()]
    assert all(check.origin == f"{PATH}:2" for check in thresholds.defaults)
    checks = thresholds.for_test(backend="vllm", model="m", test=test_name)
    assert [check.text for check in checks] == entries
    assert all(check.origin == f"{PATH}:5" for check in checks)  # the test's own table wins

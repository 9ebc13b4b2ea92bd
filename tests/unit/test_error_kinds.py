"""Every failed request gets one category; each is counted per window, stored, reported and
SLO-able; the first-token timeout and the window's deadline bound a run against a server
that goes silent, and what they cut stays in the denominator."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.clients.openai import Endpoint, StreamingClient
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.load.closed_loop import run_closed_loop
from pytest_llmperf.load.open_loop import run_open_loop
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.report.junit import window_properties
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.results.errors import ERROR_KINDS, error_counts, error_summary, kind_of
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.metrics import summarize
from pytest_llmperf.results.outcome import judge
from pytest_llmperf.results.record_codec import run_from_json, run_to_json
from pytest_llmperf.results.recorded import Provenance, RecordedWindow
from pytest_llmperf.results.records import LoadRun, RequestRecord, TokenSource
from pytest_llmperf.results.slo import evaluate
from pytest_llmperf.results.thresholds import parse_check
from pytest_llmperf.results.window import ErrorTally, WindowResult
from pytest_llmperf.settings.resolve import SettingError, resolve_settings
from tests.unit.test_client import (
    CHAT_STREAM,
    DONE,
    FINISH,
    MODEL,
    PROMPT,
    ROLE,
    Replay,
    _drop_mid_stream,
    content,
    send_one,
    with_stub,
)

MS = 1_000_000


# --- each failure a client sees has its kind ------------------------------------------------


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limited"), (503, "http_5xx"),
                                              (500, "http_5xx"), (404, "http_4xx")])
def test_http_status_kinds(status: int, kind: str) -> None:
    record = send_one(Replay(writes=(b'{"error": "busy"}',), status=status))
    assert (record.error_kind, record.ok) == (kind, False)
    assert record.error is not None and record.error.startswith(f"HTTP {status}: ")


def test_a_stream_cut_after_the_answer_began_is_truncated() -> None:
    record = send_one(_drop_mid_stream)
    assert record.error_kind == "truncated", record.error


def test_no_first_token_in_time_is_a_timeout_that_names_its_limit() -> None:
    # The role chunk comes at once (no token), the first word 5 s later.
    stub = Replay(writes=(ROLE, content("The"), FINISH, DONE), delay_s=5.0)

    async def use(base_url: str) -> RequestRecord:
        async with StreamingClient(Endpoint(base_url, MODEL), max_tokens=8, timeout_s=30.0,
                                   first_token_timeout_s=0.3) as client:
            return await client.send(1, PROMPT)

    began = time.monotonic()
    record = with_stub(stub, use)
    assert time.monotonic() - began < 2.0
    assert record.error_kind == "timeout"
    assert record.error == "no first token within 0.3 s (--llmperf-ttft-timeout)"


def test_the_first_token_limit_ends_with_the_first_token() -> None:
    # Each write 0.15 s apart: the whole answer takes longer than the first-token limit.
    stub = Replay(writes=CHAT_STREAM, delay_s=0.15)

    async def use(base_url: str) -> RequestRecord:
        async with StreamingClient(Endpoint(base_url, MODEL), max_tokens=8, timeout_s=30.0,
                                   first_token_timeout_s=0.4) as client:
            return await client.send(1, PROMPT)

    record = with_stub(stub, use)
    assert record.ok, record.error
    assert (record.end_ns - record.send_ns) / 1e9 > 0.4


def test_the_completeness_rule_names_empty_and_aborted_answers() -> None:
    empty = RequestRecord(1, 0, (), 10, 0, None, finish_reason="stop")
    aborted = RequestRecord(2, 0, (5,), 10, 1, TokenSource.USAGE, finish_reason="abort")
    short = RequestRecord(3, 0, (5, 6), 10, 2, TokenSource.USAGE, finish_reason="length")
    assert judge(empty, None).error_kind == "empty"
    assert judge(aborted, None).error_kind == "aborted"
    assert judge(short, 8).error_kind == "aborted"
    assert judge(short, 2).error_kind is None


def test_a_record_stored_without_a_kind_is_read_from_its_message() -> None:
    def failed(error: str) -> RequestRecord:
        return RequestRecord(1, 0, error=error)

    assert kind_of(failed("HTTP 429: slow down")) == "rate_limited"
    assert kind_of(failed("HTTP 502: bad gateway")) == "http_5xx"
    assert kind_of(failed("no complete answer within 600 s")) == "timeout"
    assert kind_of(failed("stream ended before the server finished the answer")) == "truncated"
    assert kind_of(failed("ClientConnectorError: Cannot connect")) == "connection"
    assert kind_of(RequestRecord(1, 0)) is None


# --- counted per window, stored, SLO-able, reported ------------------------------------------


def _answer(i: int) -> RequestRecord:
    send = i * 1000 * MS
    chunks = tuple(send + 100 * MS + k * 10 * MS for k in range(8))
    return RequestRecord(i, send, chunks, chunks[-1], 8, TokenSource.USAGE, 20,
                         TokenSource.USAGE, "length")


def _failed(i: int, kind: str, error: str) -> RequestRecord:
    return RequestRecord(i, i * 1000 * MS, end_ns=i * 1000 * MS + 5 * MS, error=error,
                         error_kind=kind)


WINDOW = LoadRun((
    _answer(0), _answer(1),
    _failed(2, "rate_limited", "HTTP 429: too many requests | retry later"),
    _failed(3, "rate_limited", "HTTP 429: again"),
    _failed(4, "timeout", "no first token within 30 s (--llmperf-ttft-timeout)"),
), 0, 5000 * MS, 2, 0)


def test_every_kind_is_a_whole_run_metric_and_an_slo_can_name_one() -> None:
    metrics = summarize(WINDOW)
    assert {kind: metrics.value(f"errors.{kind}") for kind in ERROR_KINDS} == {
        **dict.fromkeys(ERROR_KINDS, 0.0), "rate_limited": 2.0, "timeout": 1.0}
    assert metrics.value("error_rate") == pytest.approx(3 / 5)
    check = parse_check("errors.rate_limited <= 0", "thresholds.toml:3")
    (verdict,) = evaluate(metrics, [check])
    assert not verdict.passed
    assert verdict.measured == 2.0


def test_the_failure_summary_gives_each_kind_with_one_example() -> None:
    assert error_summary(WINDOW.records) == (
        '3 of 5 requests failed: rate_limited 2 (e.g. "HTTP 429: too many requests | retry '
        'later"), timeout 1 (e.g. "no first token within 30 s (--llmperf-ttft-timeout)")')
    assert error_summary(WINDOW.records[:2]) is None


def test_kinds_survive_the_store() -> None:
    stored = json.loads(json.dumps(run_to_json(WINDOW)))
    assert [raw.get("error_kind") for raw in stored["records"]] == [
        None, None, "rate_limited", "rate_limited", "timeout"]
    assert error_counts(run_from_json(Fields(stored)).records) == error_counts(WINDOW.records)


def test_junit_and_markdown_carry_the_counts(tmp_path: Path) -> None:
    served = ServedModel("vllm", "m", Endpoint("http://127.0.0.1:9/v1", "m"), engine="vllm 1")
    window = WindowResult(served.info, LoadShape.closed(2), 8, WINDOW)
    assert window.errors == {
        "rate_limited": ErrorTally(2, "HTTP 429: too many requests | retry later"),
        "timeout": ErrorTally(1, "no first token within 30 s (--llmperf-ttft-timeout)")}
    properties = dict(window_properties(window))
    assert properties["errors.rate_limited"] == 2.0
    assert properties["errors.http_5xx"] == 0.0  # every kind, zeros included
    recorded = RecordedWindow(Provenance("t.py::test_x", outcome="failed"), window)
    markdown = render_markdown([recorded], tmp_path)
    assert re.search(r"\| errors\.rate_limited \(req\) +\| +2 +\|", markdown)
    assert "errors.http_5xx" not in markdown  # kinds that did not occur stay out of the table
    assert re.search(r"\| rate_limited +\| +2 \| "
                     r"`HTTP 429: too many requests \\\| retry later` +\|", markdown)


# --- the window's deadline -------------------------------------------------------------------


class SilentServer:
    """A client whose server accepted every request and then went silent."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, request_id: int, prompt: Any) -> RequestRecord:
        self.sent += 1
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def test_a_silent_server_ends_a_closed_loop_at_the_deadline_with_timeouts() -> None:
    client = SilentServer()
    began = time.monotonic()
    run = asyncio.run(run_closed_loop(client, BuiltinPrompts(), users=3, requests=30,
                                      cut_after_s=0.3))
    assert time.monotonic() - began < 1.5
    assert client.sent == 3 and len(run.records) == 3  # the in-flight ones, none dropped
    assert {r.error_kind for r in run.records} == {"timeout"}
    assert summarize(run).value("error_rate") == 1.0
    assert run.stopped_early is not None and "--llmperf-window-timeout" in run.stopped_early


def test_the_deadline_counts_from_the_warm_up() -> None:
    began = time.monotonic()
    run = asyncio.run(run_closed_loop(SilentServer(), BuiltinPrompts(), users=2, requests=8,
                                      warmup=2, cut_after_s=0.3))
    assert time.monotonic() - began < 1.5
    assert run.records == ()  # the warm-up was cut: nothing was measured
    assert run.stopped_early is not None and "0.3 s" in run.stopped_early


def test_a_silent_server_ends_an_open_loop_at_the_deadline_with_timeouts() -> None:
    shape = LoadShape.open(20.0, arrivals="constant")
    began = time.monotonic()
    run = asyncio.run(run_open_loop(SilentServer(), BuiltinPrompts(), shape=shape,
                                    requests=100, cut_after_s=0.5))
    assert time.monotonic() - began < 2.0
    # About 10 arrivals were due before the deadline; each was sent and cut, none dropped.
    assert 6 <= len(run.records) <= 12
    assert {r.error_kind for r in run.records} == {"timeout"}
    assert all(r.scheduled_ns is not None for r in run.records)
    assert run.stopped_early is not None and "not sent" in run.stopped_early


# --- the options ----------------------------------------------------------------------------


def test_time_limits_resolve_and_a_useless_first_token_limit_is_refused(tmp_path: Path) -> None:
    settings = resolve_settings({"ttft_timeout": "30", "window_timeout": "900"}, {}, {},
                                tmp_path)
    assert (settings.load.request_timeout, settings.load.ttft_timeout,
            settings.load.window_timeout) == (600.0, 30.0, 900.0)
    with pytest.raises(SettingError) as caught:
        resolve_settings({"ttft_timeout": "60"}, {"LLMPERF_REQUEST_TIMEOUT": "20"}, {},
                         tmp_path)
    assert str(caught.value) == (
        "--llmperf-ttft-timeout (command line): a first-token timeout of 60 s never fires "
        "before the request timeout of 20 s (LLMPERF_REQUEST_TIMEOUT (environment)): give a "
        "shorter one, or raise the request timeout")


def test_an_error_count_is_no_regression_gate() -> None:
    from pytest_llmperf.results.thresholds import ThresholdError, parse_gate

    with pytest.raises(ThresholdError, match=r"errors\.timeout cannot be compared with a "
                                             r"baseline"):
        parse_gate("errors.timeout:5%", "--llmperf-compare-fail (command line)")

"""Request traces (prompts.trace_files, prompts.trace_prompts): each format read, every problem
named with its file and line, slices and speed-ups, the trace's own reuse, prompts whose shared
blocks are shared text, and the open-loop schedule at the trace's offsets."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.load.open_loop import run_open_loop, schedule
from pytest_llmperf.prompts.dataset_spec import parse_dataset
from pytest_llmperf.prompts.json_stream import DatasetFileError
from pytest_llmperf.prompts.shipped_trace import SHIPPED_TRACE, make_trace
from pytest_llmperf.prompts.trace_files import BLOCK_TOKENS, Trace, TraceRequest, read_trace
from pytest_llmperf.prompts.trace_prompts import TracePrompts, replay_shape
from pytest_llmperf.results.load_shape import LoadShape
from pytest_llmperf.results.records import RequestRecord
from pytest_llmperf.settings.parsers import time_slice
from tests.unit.test_datasets import TAG, WordTokenizer


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def jsonl(tmp_path: Path, *lines: dict[str, object]) -> Path:
    return write(tmp_path, "trace.jsonl", "".join(json.dumps(line) + "\n" for line in lines))


def test_a_jsonl_trace_in_mooncake_keys_is_read_in_time_order(tmp_path: Path) -> None:
    path = jsonl(tmp_path,
                 {"timestamp": 27482, "input_length": 6955, "output_length": 52,
                  "hash_ids": list(range(14))},
                 {"timestamp": 27000, "input_length": 600, "output_length": 8,
                  "session_id": "chat-1", "turn": 2},
                 {"timestamp": 30000, "input_length": 7000, "output_length": 9,
                  "hash_ids": [*range(13), 99]})
    trace = read_trace(path)
    assert trace.format == "jsonl"
    assert [r.offset_s for r in trace.requests] == [0.0, pytest.approx(0.482), 3.0]
    assert trace.requests[0] == TraceRequest(0.0, 600, 8, (), "chat-1", 2)
    assert trace.requests[1].hash_ids == tuple(range(14))
    assert trace.mean_rate == pytest.approx(2 / 3.0)
    # The third shares the second's first 13 blocks: 13 x 512 of all 14555 prompt tokens.
    assert trace.reuse_ratio == pytest.approx(13 * BLOCK_TOKENS / (600 + 6955 + 7000))


@pytest.mark.parametrize(("line", "message"), [
    ('[1, 2]', "trace.jsonl:2: expected a JSON object (timestamp, input_length, output_length), "
               "found "),
    ('{"timestamp": 5, "input_length": 10}', "trace.jsonl:2: no 'output_length'"),
    ('{"timestamp": -5, "input_length": 10, "output_length": 3}',
     "trace.jsonl:2: timestamp: expected milliseconds, a number >= 0, found an integer (-5)"),
    ('{"timestamp": 5, "input_length": 0, "output_length": 3}',
     "trace.jsonl:2: input_length: expected a whole number of tokens from 1 to 10000000, found "
     "an integer (0)"),
    ('{"timestamp": 5, "input_length": 10, "output_length": 2.5}',
     "trace.jsonl:2: output_length: expected a whole number of tokens"),
    ('{"timestamp": 5, "input_length": 600, "output_length": 3, "hash_ids": [1, 2, 3]}',
     "trace.jsonl:2: hash_ids: 3 blocks of 512 tokens need an input_length above 1024, found "
     "600"),
    ('{"timestamp": 5, "input_length": 600, "output_length": 3, "hash_ids": ["a"]}',
     "trace.jsonl:2: hash_ids: expected a list of block ids"),
    ('{"timestamp": 5, "input_length": 60, "output_length": 3, "turn": -1}',
     "trace.jsonl:2: turn: expected a whole number >= 0"),
    ('{"timestamp": 5, "input_length": 60', "trace.jsonl:2:36: not valid JSON"),
])
def test_a_bad_jsonl_line_is_named_with_what_was_expected(tmp_path: Path, line: str,
                                                           message: str) -> None:
    good = '{"timestamp": 0, "input_length": 100, "output_length": 10}\n'
    path = write(tmp_path, "trace.jsonl", good + line + "\n")
    with pytest.raises(DatasetFileError) as raised:
        read_trace(path)
    assert str(raised.value).startswith(f"{tmp_path}/{message}"), raised.value


def test_burstgpt_rows_of_failed_requests_are_left_out_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "burst.csv",
                 "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                 "5,ChatGPT,472,18,490,Conversation log\n"
                 "45,ChatGPT,1087,0,1087,Conversation log\n"
                 "118,GPT-4,417,276,693,API log\n")
    trace = read_trace(path)
    assert (trace.format, trace.left_out) == ("burstgpt", 1)
    assert [(r.offset_s, r.input_tokens, r.output_tokens) for r in trace.requests] == [
        (0.0, 472, 18), (113.0, 417, 276)]
    assert trace.reuse_ratio is None
    bad = write(tmp_path, "bad.csv", "Timestamp,Model,Request tokens,Response tokens\n"
                                     "5,ChatGPT,472,18\n6,ChatGPT,many,18\n")
    with pytest.raises(DatasetFileError, match=r"bad\.csv:3: Request tokens: expected a whole "
                                               r"number of tokens from 1 to 10000000, found "
                                               r"'many'"):
        read_trace(bad)


def test_the_azure_trace_reads_its_date_times(tmp_path: Path) -> None:
    path = write(tmp_path, "azure.csv",
                 "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:50.9951690,396,109\n")
    trace = read_trace(path)
    assert trace.format == "azure"
    assert [r.offset_s for r in trace.requests] == [0.0, pytest.approx(4.314579, abs=1e-6)]
    bad = write(tmp_path, "bad.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                     "yesterday,374,44\n")
    with pytest.raises(DatasetFileError, match=r"bad\.csv:2: TIMESTAMP: expected a date and "
                                               r"time such as 2023-11-16 18:15:46.6805900, "
                                               r"found 'yesterday'"):
        read_trace(bad)


def test_a_file_of_no_known_format_says_which_formats_are(tmp_path: Path) -> None:
    path = write(tmp_path, "other.csv", "time,prompt,answer\n1,2,3\n")
    with pytest.raises(DatasetFileError) as raised:
        read_trace(path)
    assert str(raised.value) == (
        f"{path}:1: expected a trace: JSON lines with timestamp, input_length and "
        "output_length, or the CSV header of BurstGPT (Timestamp,Model,Request tokens,Response "
        "tokens,...) or of the Azure LLM inference trace (TIMESTAMP,ContextTokens,"
        "GeneratedTokens); found 'time,prompt,answer'")
    with pytest.raises(DatasetFileError, match="no such file"):
        read_trace(tmp_path / "missing.jsonl")


def test_a_window_slices_the_recording_and_a_speed_compresses_it() -> None:
    trace = Trace(Path("t"), "jsonl", tuple(TraceRequest(float(t), 100, 10)
                                            for t in (0, 10, 20, 30, 40)))
    part = trace.window(10, 35, speed=2.0)
    assert [r.offset_s for r in part.requests] == [0.0, 5.0, 10.0]
    assert (part.start_s, part.end_s, part.speed) == (10, 35, 2.0)
    assert part.mean_rate == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"t: no request of the trace arrived between 41 s and "
                                         r"its end \(it spans 40 s\)"):
        trace.window(41)
    assert time_slice("60:180") == (60.0, 180.0)
    assert time_slice("60:") == (60.0, None)
    assert time_slice(":120") == (0.0, 120.0)
    for bad in ("60", "180:60", "a:b", "-1:5"):
        with pytest.raises(ValueError, match="expected START:END in seconds of the trace"):
            time_slice(bad)


def test_the_dataset_option_reads_a_trace_with_its_slice_and_speed(tmp_path: Path) -> None:
    path = jsonl(tmp_path, *({"timestamp": 1000 * t, "input_length": 100, "output_length": 10}
                             for t in range(10)))
    spec = parse_dataset(f"trace:{path}", trace_speed=4.0, trace_window=(2.0, 6.0))
    assert spec.trace is not None and spec.needs_tokenizer
    assert [r.offset_s for r in spec.trace.requests] == [0.0, 0.25, 0.5, 0.75]
    with pytest.raises(ValueError, match="trace: takes the file's path only"):
        parse_dataset(f"trace:{path},output=5")


def test_the_shipped_trace_is_what_its_generator_makes() -> None:
    lines = [json.loads(line) for line in SHIPPED_TRACE.read_text().splitlines()]
    assert lines == make_trace()
    trace = read_trace(SHIPPED_TRACE)
    assert len(trace.requests) == 18
    assert trace.reuse_ratio is not None and 0.3 < trace.reuse_ratio < 0.6
    # Bursts: three requests within half a second, twice.
    offsets = [r.offset_s for r in trace.requests]
    assert sum(sum(t <= o < t + 0.5 for o in offsets) >= 3 for t in offsets) >= 2


def trace_of(*requests: TraceRequest) -> Trace:
    return Trace(Path("t.jsonl"), "jsonl", requests)


def test_requests_that_share_blocks_share_their_text_and_no_more() -> None:
    tokenizer = WordTokenizer()
    trace = trace_of(TraceRequest(0.0, 600, 7, (1,)), TraceRequest(1.0, 1100, 9, (1, 2)),
                     TraceRequest(2.0, 700, 5, (3,)), TraceRequest(3.0, 40, 3))
    source = TracePrompts(tokenizer, trace, seed=1, salt="s")
    prompts = [source.next_prompt() for _ in range(4)]
    blocks = [p.text.split("\n") for p in prompts]
    assert blocks[0][0] == blocks[1][0]  # block 1, the same text
    assert blocks[2][0] != blocks[0][0]
    assert [tokenizer.count(b) for b in blocks[1]] == [512, 512, 76]
    assert [tokenizer.count(p.text) for p in prompts] == [600, 1100, 700, 40]
    assert [p.output_tokens for p in prompts] == [7, 9, 5, 3]
    # Every block and every own text is tagged with this run's salt: another run shares none.
    again = TracePrompts(tokenizer, trace, seed=1, salt="t").next_prompt()
    assert again.text.split("\n")[0] != blocks[0][0]
    assert len(TAG.findall(prompts[1].text)) == 3
    # Past the end the trace starts over as new requests: its blocks are new text too.
    assert source.next_prompt().text.split("\n")[0] != blocks[0][0]


def test_a_replay_warms_up_at_the_mean_gap_without_touching_the_blocks() -> None:
    trace = trace_of(TraceRequest(0.0, 600, 8, (1,)), TraceRequest(2.0, 600, 8, (1,)),
                     TraceRequest(4.0, 40, 16))
    shape = replay_shape(trace, warmup=2)
    assert shape.offsets == (0.0, 2.0, 4.0, 6.0, 8.0)
    assert (shape.arrivals, shape.rate, shape.label) == ("trace", 0.5, "trace at 0.5 req/s")
    source = TracePrompts(WordTokenizer(), trace, warmup=2, salt="s")
    warm = [source.next_prompt() for _ in range(2)]
    first = source.next_prompt()
    assert all(first.text.split("\n")[0] not in p.text for p in warm)
    assert [p.output_tokens for p in warm] == [8, 8]  # the trace's median lengths
    # The open loop offers the trace's arrivals, no more than it holds.
    assert schedule(shape, 2, 100, None) == ([0.0, 2.0, 4.0, 6.0, 8.0], 3)
    assert schedule(shape, 2, None, 3.0) == ([0.0, 2.0, 4.0, 6.0], 2)
    # A capacity search or sweep scales the recording's pace.
    assert shape.with_load(1.0).offsets == (0.0, 1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="start at 0 and never go back"):
        LoadShape(rate=1.0, arrivals="trace", offsets=(0.0, 2.0, 1.0))


class TurnClient:
    """Answers each request after 0.2 s; keeps (session, send time, end time) per request."""

    def __init__(self) -> None:
        self.sent: list[tuple[str | None, int, int]] = []

    async def send(self, request_id: int, prompt: Prompt) -> RequestRecord:
        send = time.perf_counter_ns()
        await asyncio.sleep(0.2)
        end = time.perf_counter_ns()
        self.sent.append((prompt.session, send, end))
        return RequestRecord(request_id, send, (end,), end, 2)


def test_a_conversation_s_turns_wait_for_the_answer_before_them() -> None:
    # Two turns of chat "a" 50 ms apart (the answer takes 200 ms), one of "b" between them.
    trace = trace_of(TraceRequest(0.0, 40, 2, session="a", turn=0),
                     TraceRequest(0.02, 40, 2, session="b", turn=0),
                     TraceRequest(0.05, 40, 2, session="a", turn=1))
    client = TurnClient()
    source = TracePrompts(WordTokenizer(), trace)
    run = asyncio.run(run_open_loop(client, source, shape=replay_shape(trace),  # type: ignore[arg-type]
                                    requests=3))
    first, second_turn = sorted((s, e) for name, s, e in client.sent if name == "0-a")
    ((other, _),) = [(s, e) for name, s, e in client.sent if name == "0-b"]
    assert second_turn[0] >= first[1]  # the second turn went once the first was answered ...
    assert other < first[1]  # ... while another conversation did not wait
    # The wait is the server's doing: slip, counted as queued, not the client's lateness.
    second = next(r for r in run.records if r.request_id == 2)
    assert second.queued_ns >= 0.14 * 1e9
    assert second.send_ns - (second.scheduled_ns or 0) - second.queued_ns < 0.02 * 1e9

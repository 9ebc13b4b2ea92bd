"""Reasoning ("thinking") apart from the answer: the inline splitter, the per-read tracker, and
both streaming clients on recorded streams in each engine's format.

Two ways of driving a client: against the aiohttp stubs of test_client/test_ollama (each
scripted write is one network read, so readings are compared with each other), and by feeding
the client's stream state one network read at a time with chosen timestamps, which makes every
timestamp exact.  TTFT (``chunk_ns[0]``) must stay the first read of any kind: GuideLLM #737
mis-timed it when reasoning came first.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_llmperf.clients.base import as_prompt
from pytest_llmperf.clients.ollama import NDJSONLines, _Answer
from pytest_llmperf.clients.openai_stream import OpenAIStream, stream_record
from pytest_llmperf.clients.reasoning import ReasoningTracker, ThinkSplitter
from pytest_llmperf.clients.sse import SSEParser
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.results.records import RequestRecord, TokenSource
from tests.unit.test_client import DONE, PROMPT, Replay, WordCounter, send_one, sse
from tests.unit.test_ollama import chunk as ollama_chunk
from tests.unit.test_ollama import final as ollama_final
from tests.unit.test_ollama import replay as ollama_replay

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
SEND_NS = 1_000_000
READ_NS = tuple(SEND_NS + 10_000_000 * (i + 1) for i in range(20))  # read i arrives here


# --- recorded traffic ------------------------------------------------------------------------


def vllm(delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
    """A vLLM chat.completion.chunk (its field order; ``stop_reason`` on the last one)."""
    choice: dict[str, Any] = {"index": 0, "delta": dict(delta), "logprobs": None,
                              "finish_reason": finish_reason}
    if finish_reason:
        choice["stop_reason"] = None
    return sse({"id": "chatcmpl-5d1e6f0a9b8c4d7e", "object": "chat.completion.chunk",
                "created": 1735000000, "model": MODEL, "choices": [choice]})


def sglang(content: str | None = None, reasoning: str | None = None,
           finish_reason: str | None = None) -> bytes:
    """An SGLang chunk: every delta field present, null where unused."""
    delta = {"role": None, "content": content, "reasoning_content": reasoning, "tool_calls": None}
    return sse({"id": "8c0f2b1e7d6a4f3e", "object": "chat.completion.chunk",
                "created": 1735000000, "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish_reason, "matched_stop": None}],
                "usage": None})


def usage(completion: int, prompt: int = 12, reasoning: int | None = None) -> bytes:
    body: dict[str, Any] = {"prompt_tokens": prompt, "total_tokens": prompt + completion,
                            "completion_tokens": completion}
    if reasoning is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return sse({"id": "chatcmpl-5d1e6f0a9b8c4d7e", "object": "chat.completion.chunk",
                "created": 1735000000, "model": MODEL, "choices": [], "usage": body})


def think(text: str, key: str = "reasoning_content") -> bytes:
    return vllm({key: text})


def say(text: str) -> bytes:
    return vllm({"content": text})


ROLE = vllm({"role": "assistant", "content": ""})
STOP = vllm({"content": ""}, finish_reason="stop")


class Words(WordCounter):
    """test_client's word counter, with the TokenCounter protocol's full signature."""

    def count_prompt(self, prompt: str, history: Sequence[tuple[str, str]] = ()) -> int:
        return super().count_prompt(prompt)


def stream_at(reads: Sequence[bytes], *, max_tokens: int = 64) -> RequestRecord:
    """The OpenAI client's record of ``reads``, read i arriving at READ_NS[i]."""
    stream, parser = OpenAIStream(), SSEParser()
    for raw, now_ns in zip(reads, READ_NS, strict=False):
        stream.read(parser.feed(raw), now_ns)
    stream.read(parser.close(), READ_NS[len(reads)])
    stream.end_ns = READ_NS[len(reads)]
    return stream_record(7, as_prompt(PROMPT), max_tokens, SEND_NS, stream)


def ollama_at(reads: Sequence[bytes]) -> RequestRecord:
    """The Ollama client's record of ``reads``, read i arriving at READ_NS[i]."""
    answer, lines = _Answer(), NDJSONLines()
    for raw, now_ns in zip(reads, READ_NS, strict=False):
        answer.read(lines.feed(raw), now_ns)
    answer.close(lines.close(), READ_NS[len(reads)])
    return answer.record(7, SEND_NS)


# --- vLLM and SGLang: the server's reasoning parser --------------------------------------


def test_vllm_reasoning_then_answer_with_usage_reasoning_tokens() -> None:
    stub = Replay(writes=(
        ROLE,
        think("Okay, the user asks"),
        think(" about France."),
        say("Paris") + say(" it is."),  # two events, one read
        STOP,
        usage(completion=9, reasoning=6),
        DONE,
    ))
    counter = Words()
    record = send_one(stub, token_counter=counter)

    assert record.ok
    assert len(record.chunk_ns) == 3
    assert record.reasoning_chunks == 2
    # TTFT is the first reasoning read; the answer starts and ends at the third read.
    assert record.answer_start_ns == record.answer_end_ns == record.chunk_ns[2]
    assert record.chunk_ns[0] < record.answer_start_ns
    assert record.reasoning_tokens == 6
    assert record.reasoning_token_source is TokenSource.USAGE
    assert record.answer_tokens == 3
    assert record.output_tokens == 9  # the server's count, reasoning included
    assert record.reasoning_text is None
    assert counter.asked == []  # usage said it all


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_either_reasoning_key_at_exact_read_times(key: str) -> None:
    record = stream_at((
        ROLE,
        think("Hmm, France", key),
        think(" has a capital.", key) + say("Paris."),  # both kinds in one read
        say(" Yes."),
        STOP + usage(completion=7) + DONE,
    ))

    assert record.error is None
    assert record.chunk_ns == READ_NS[1:4]
    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == READ_NS[2]
    assert record.answer_end_ns == READ_NS[3]
    # No reasoning count in usage: the text waits for the tokenizer.
    assert record.reasoning_tokens is None
    assert record.reasoning_text == "Hmm, France has a capital."
    assert record.answer_tokens is None


def test_sglang_stream_reasoning_counted_by_the_tokenizer_after_the_window() -> None:
    writes = (
        sglang(content="", reasoning=None),
        sglang(reasoning="The user wants"),
        sglang(reasoning=" a city."),
        sglang(content="Paris is"),
        sglang(content=" the capital."),
        sglang(finish_reason="stop"),
        usage(completion=8),
        DONE,
    )
    counter = Words()
    record = send_one(Replay(writes=writes), token_counter=counter)

    assert record.ok
    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == record.chunk_ns[2]
    assert record.answer_end_ns == record.chunk_ns[3] == record.chunk_ns[-1]
    assert counter.asked == ["The user wants a city."]  # usage had the rest
    assert record.reasoning_tokens == 5
    assert record.reasoning_token_source is TokenSource.TOKENIZER
    assert record.answer_tokens == 3
    assert record.reasoning_text is None


def test_without_a_tokenizer_the_reasoning_count_is_unknown_not_an_error() -> None:
    writes = (sglang(reasoning="Thinking."), sglang(content="Paris."),
              sglang(finish_reason="stop"), usage(completion=4), DONE)
    record = send_one(Replay(writes=writes))

    assert record.ok and record.error is None
    assert record.reasoning_chunks == 1
    assert record.reasoning_tokens is None
    assert record.reasoning_token_source is None
    assert record.answer_tokens is None
    assert record.reasoning_text is None  # dropped all the same


def test_a_reasoning_zero_from_a_stream_that_reasoned_is_not_a_count() -> None:
    record = stream_at((think("Let me see."), say("Paris."),
                        STOP + usage(completion=5, reasoning=0) + DONE))
    assert record.reasoning_tokens is None
    assert record.reasoning_text == "Let me see."


def test_a_stream_that_only_reasons_has_no_answer() -> None:
    record = stream_at((ROLE, think("Step one."), think(" Step two."),
                        vllm({"reasoning_content": " Step"}, finish_reason="length")
                        + usage(completion=6, reasoning=6) + DONE))

    assert record.ok
    assert record.chunk_ns == READ_NS[1:4]
    assert record.reasoning_chunks == 3
    assert record.answer_start_ns is None and record.answer_end_ns is None
    assert record.answer_tokens == 0


def test_no_reasoning_leaves_the_reasoning_fields_at_zero() -> None:
    record = stream_at((ROLE, say("Paris"), say(" is it."), STOP + usage(completion=3) + DONE))

    assert not record.has_reasoning
    assert record.reasoning_chunks == 0
    assert record.reasoning_tokens == 0
    assert record.reasoning_text is None
    assert record.answer_tokens == 3
    assert (record.answer_start_ns, record.answer_end_ns) == (READ_NS[1], READ_NS[2])


def test_reasoning_and_answer_split_across_network_read_boundaries() -> None:
    answer = say("Paris.")
    reasoning = think(" a moment")
    record = stream_at((
        think("Wait,") + reasoning[:20],  # a reasoning event and the start of another
        reasoning[20:] + answer[:30],  # its end, and an answer event cut short
        answer[30:],  # the answer event's end: the answer shows here
        STOP + usage(completion=5, reasoning=3) + DONE,
    ))

    assert record.error is None
    assert record.chunk_ns == READ_NS[:3]
    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == record.answer_end_ns == READ_NS[2]


# --- inline <think> tags in the content (no reasoning parser) ---------------------------


def test_inline_think_tags_in_content() -> None:
    record = stream_at((
        ROLE,
        say("<think>\n"),
        say("Okay, France."),
        say("\n</think>\n\n"),  # whitespace after the tag is not the answer's start
        say("Paris"),
        say("."),
        STOP + usage(completion=9) + DONE,
    ))

    assert record.chunk_ns == READ_NS[1:6]
    assert record.chunk_ns[0] == READ_NS[1]  # TTFT: the opening tag's read
    assert record.reasoning_chunks == 3
    assert record.answer_start_ns == READ_NS[4]
    assert record.answer_end_ns == READ_NS[5]
    assert record.reasoning_text == "\nOkay, France.\n"


def test_inline_tags_cut_in_the_middle_across_reads() -> None:
    record = stream_at((
        say("\n<thi"),
        say("nk>Hmm"),
        say(", yes.</thi"),
        say("nk>"),
        say("Paris."),
        STOP + usage(completion=6) + DONE,
    ))

    assert record.chunk_ns == READ_NS[:5]
    assert record.reasoning_chunks == 2  # "Hmm" and ", yes.": the tags alone are neither
    assert record.answer_start_ns == record.answer_end_ns == READ_NS[4]
    assert record.reasoning_text == "\nHmm, yes."


def test_a_read_carrying_the_closing_tag_and_the_answer_counts_for_both() -> None:
    record = stream_at((say("<think>Hmm"), say(" ok.</think>The answer"), say(" is Paris."),
                        STOP + usage(completion=8) + DONE))

    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == READ_NS[1]
    assert record.answer_end_ns == READ_NS[2]
    assert record.reasoning_text == "Hmm ok."


def test_a_lone_closing_tag_makes_what_came_before_it_reasoning() -> None:
    # The chat template opened the block: the stream has only its end.
    record = stream_at((
        say("Okay, the user"),
        say(" asks.") + say("\n</th"),
        say("ink>\n\n"),
        say("Paris"),
        say(" it is."),
        STOP + usage(completion=8) + DONE,
    ))

    assert record.chunk_ns == READ_NS[:5]
    assert record.reasoning_chunks == 2  # the read of the tag alone carried neither kind
    assert record.answer_start_ns == READ_NS[3]
    assert record.answer_end_ns == READ_NS[4]
    assert record.reasoning_text == "Okay, the user asks.\n"
    assert record.output_text is None  # usage counted the output


def test_completions_text_goes_through_the_inline_splitter() -> None:
    def text(piece: str, finish_reason: str | None = None) -> bytes:
        return sse({"choices": [{"text": piece, "index": 0, "logprobs": None,
                                 "finish_reason": finish_reason}], "object": "text_completion"})

    stream, parser = OpenAIStream(), SSEParser()
    for raw, now_ns in zip((text("So"), text(" 2+2=4.</think>"), text(" 4", "stop"),
                            usage(completion=5) + DONE), READ_NS, strict=False):
        stream.read(parser.feed(raw), now_ns)
    record = stream_record(1, as_prompt("2+2?"), 8, SEND_NS, stream)

    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == READ_NS[2]
    assert record.reasoning_text == "So 2+2=4."


def test_without_usage_the_output_count_still_has_all_the_text() -> None:
    counter = Words()
    writes = (say("<think>One two"), say(" three</think>"), say("Four five."), STOP, DONE)
    record = send_one(Replay(writes=writes), token_counter=counter)

    assert record.ok
    assert counter.asked == ["<think>One two three</think>Four five.", PROMPT, "One two three"]
    assert record.output_token_source is TokenSource.TOKENIZER
    assert record.reasoning_tokens == 3
    assert record.reasoning_token_source is TokenSource.TOKENIZER


# --- Ollama's native stream -----------------------------------------------------------------


def test_ollama_thinking_then_content_at_exact_read_times() -> None:
    record = ollama_at((
        ollama_chunk(thinking="Okay, the user"),
        ollama_chunk(thinking=" asks.") + ollama_chunk(thinking=" Easy."),
        ollama_chunk("Paris"),
        ollama_chunk(" it is."),
        ollama_final("stop", eval_count=9, eval_duration=9_000_000, prompt_eval_count=20),
    ))

    assert record.error is None and record.ok
    assert record.chunk_ns == READ_NS[:4]
    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == READ_NS[2]
    assert record.answer_end_ns == READ_NS[3]
    assert record.reasoning_tokens is None  # Ollama does not count them
    assert record.reasoning_text == "Okay, the user asks. Easy."


def test_ollama_thinking_counted_by_the_tokenizer_or_left_unknown() -> None:
    record, _ = ollama_replay(ollama_chunk(thinking="Hmm, France."), ollama_chunk("Paris."),
                              ollama_final("stop", eval_count=5, prompt_eval_count=20))

    assert record.ok
    assert record.reasoning_chunks == 1
    assert record.answer_start_ns == record.chunk_ns[1]
    assert record.chunk_ns[0] < record.answer_start_ns
    counter = Words()
    [counted] = count_missing_tokens([record], counter)
    assert counter.asked == ["Hmm, France."]
    assert counted.reasoning_tokens == 2
    assert counted.reasoning_token_source is TokenSource.TOKENIZER
    assert counted.answer_tokens == 3
    [unknown] = count_missing_tokens([record], None)
    assert unknown.ok and unknown.reasoning_tokens is None and unknown.reasoning_text is None


def test_ollama_inline_think_in_content() -> None:
    record = ollama_at((ollama_chunk("<think>Hm"), ollama_chunk("m.</th"),
                        ollama_chunk("ink>\n\n"), ollama_chunk("Paris."), ollama_final("stop")))

    assert record.reasoning_chunks == 2
    assert record.answer_start_ns == record.answer_end_ns == READ_NS[3]
    assert record.reasoning_text == "Hmm."


def test_ollama_without_thinking() -> None:
    record = ollama_at((ollama_chunk("Paris"), ollama_chunk("."), ollama_final()))
    assert record.reasoning_chunks == 0 and record.reasoning_tokens == 0
    assert record.reasoning_text is None


# --- token_count ----------------------------------------------------------------------------


def kept(**changes: Any) -> RequestRecord:
    base = RequestRecord(request_id=1, send_ns=0, chunk_ns=(5, 9), end_ns=10, output_tokens=7,
                         output_token_source=TokenSource.USAGE, reasoning_chunks=1,
                         answer_start_ns=9, answer_end_ns=9, reasoning_tokens=None,
                         reasoning_text="one two three four")
    return dataclasses.replace(base, **changes)


def test_token_count_fills_reasoning_tokens_with_a_counter() -> None:
    [record] = count_missing_tokens([kept()], Words())
    assert record.reasoning_tokens == 4
    assert record.reasoning_token_source is TokenSource.TOKENIZER
    assert record.answer_tokens == 3
    assert record.reasoning_text is None and record.error is None


def test_token_count_without_a_counter_leaves_reasoning_unknown() -> None:
    [record] = count_missing_tokens([kept()], None)
    assert record.ok and record.error is None
    assert record.reasoning_tokens is None and record.reasoning_text is None


def test_token_count_failure_fails_the_request() -> None:
    class Broken(Words):
        def count_text(self, text: str) -> int:
            raise RuntimeError("tokenizer gone")

    [record] = count_missing_tokens([kept()], Broken())
    assert record.error is not None and "tokenizer gone" in record.error
    assert record.reasoning_text is None


def test_token_count_skips_failed_requests_but_drops_their_text() -> None:
    counter = Words()
    [record] = count_missing_tokens([kept(error="HTTP 500: boom")], counter)
    assert counter.asked == [] and record.reasoning_text is None
    assert record.error == "HTTP 500: boom"


# --- the splitter on its own ----------------------------------------------------------------


def split(pieces: Sequence[str]) -> tuple[str, str]:
    """Joined reasoning and answer of ``pieces``; answer given out before a lone ``</think>``
    becomes reasoning, as the tracker does."""
    splitter = ThinkSplitter()
    reasoning: list[str] = []
    answer: list[str] = []
    for piece in pieces:
        thought, said = splitter.feed(piece)
        if splitter.lone_close:
            reasoning += answer
            answer = []
        reasoning.append(thought)
        answer.append(said)
    thought, said = splitter.flush()
    return "".join([*reasoning, thought]), "".join([*answer, said])


@pytest.mark.parametrize(("pieces", "expected"), [
    (["<think>a</think>b"], ("a", "b")),
    (["\n\n<think>a</think>b"], ("\n\na", "b")),  # whitespace before the tag: not the answer
    (["<thi", "nk>a</thi", "nk>b"], ("a", "b")),
    (["<", "t", "h", "i", "n", "k", ">a<", "/", "think", ">b"], ("a", "b")),
    (["a</think>b"], ("a", "b")),  # the template opened the block
    (["a", "b</th", "ink>c"], ("ab", "c")),
    (["Paris <b>bold</b>"], ("", "Paris <b>bold</b>")),
    (["Use the ", "<think> tag"], ("", "Use the <think> tag")),  # not at the start: text
    (["a</think>b</think>c"], ("a", "b</think>c")),  # one block: a second close is text
    (["<think>only thinking"], ("only thinking", "")),
    (["<thi"], ("", "<thi")),  # a prefix held to the end is text
    (["<think>x</thi"], ("x</thi", "")),
    (["x <", "/"], ("", "x </")),
    ([""], ("", "")),
])
def test_splitter(pieces: list[str], expected: tuple[str, str]) -> None:
    assert split(pieces) == expected


def test_splitter_holds_back_only_a_possible_tag_prefix() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("Paris is <") == ("", "Paris is ")
    assert splitter.feed("b>") == ("", "<b>")
    assert splitter.feed("x </thin") == ("", "x ")
    assert splitter.feed("g") == ("", "</thing")
    assert not splitter.lone_close
    assert splitter.feed("</think>") == ("", "")
    assert splitter.lone_close
    assert splitter.feed("<think>") == ("", "<think>")  # the block is over: plain text
    assert not splitter.lone_close


THINK_STREAMS = (
    "\n<think>\nOkay, so the user asks about <b>France</b>.\n</think>\n\nParis. </thi",
    "Hmm, template-opened </thinking> block.\n</think>\n\nParis <think> is it.",
    "<think></think>Answer < 3 and </think> too",
    "Plain answer with < and <t and </ in it",
)


def cut(text: str, at: Sequence[int]) -> list[str]:
    bounds = sorted({0, len(text), *(i % (len(text) + 1) for i in at)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(database=None, deadline=None, max_examples=300)
@given(st.sampled_from(THINK_STREAMS), st.lists(st.integers(0, 10_000), max_size=40))
def test_every_cut_of_a_stream_splits_the_same(text: str, at: list[int]) -> None:
    pieces = cut(text, at)
    assert split(pieces) == split([text])
    tracker = ReasoningTracker()
    for index, piece in enumerate(pieces):
        tracker.content(piece)
        tracker.end_read(index)
    assert tracker.finish().reasoning_text == split([text])[0]


def test_tracker_reclassifies_earlier_answer_reads_when_a_lone_close_comes() -> None:
    tracker = ReasoningTracker()
    for now_ns, piece in enumerate(("Okay", " so", ".</think>\n\n", "Paris", "!"), start=100):
        tracker.content(piece)
        tracker.end_read(now_ns)
    summary = tracker.finish()
    assert summary.reasoning_chunks == 3
    assert (summary.answer_start_ns, summary.answer_end_ns) == (103, 104)
    assert summary.reasoning_text == "Okay so."


def test_tracker_held_text_flushed_with_the_last_read() -> None:
    tracker = ReasoningTracker()
    tracker.reasoning("Hmm.")
    tracker.end_read(1)
    tracker.content("Paris <")
    tracker.end_read(2)
    tracker.content("/th")  # "</th" might still become "</think>": held to the end
    tracker.end_read(3)
    summary = tracker.finish()
    assert (summary.reasoning_chunks, summary.answer_start_ns, summary.answer_end_ns) == (1, 2, 3)


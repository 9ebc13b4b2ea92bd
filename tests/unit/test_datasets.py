"""Prompt datasets: lengths, the dataset spec, and the sources that make prompts from them.

A toy word tokenizer stands in for the model's: one id per whitespace-separated word, so every
length in tokens can be counted by hand.  Its ``glue`` mode decodes some words stuck onto the
word before them, so a decoded cut re-encodes to fewer tokens than it was (as real BPE merges
at a cut): that is what makes :func:`exact_text` re-count.
"""

from __future__ import annotations

import itertools
import random
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.prompts.builtin import BuiltinPrompts, MadeAhead, unique_tag
from pytest_llmperf.prompts.dataset_files import (
    DatasetEntry,
    DatasetFileError,
    load_jsonl,
    load_sharegpt,
)
from pytest_llmperf.prompts.dataset_spec import DatasetSpec, parse_dataset
from pytest_llmperf.prompts.files import FilePrompts
from pytest_llmperf.prompts.shared_prefix import SharedPrefixPrompts
from pytest_llmperf.prompts.sources import NoTokenizer, prompt_source
from pytest_llmperf.prompts.synthetic import (
    MIN_PROMPT_TOKENS,
    ExactLengthError,
    Lengths,
    RandomPrompts,
    exact_text,
    parse_lengths,
)
from pytest_llmperf.results.prompt_origin import PromptOrigin

DATA = Path(__file__).resolve().parent.parent / "data"
SHAREGPT = DATA / "sharegpt_sample.json"
JSONL = DATA / "prompts_sample.jsonl"
TAG = re.compile(r"\[[0-9a-f]{8}\]")
GLUED = frozenset({"time", "people", "year"})  # three of the synthetic prompts' words


class WordTokenizer:
    """One id per word.  Words in ``glue`` decode stuck onto the word before them (no space),
    so re-encoding a decoded text merges each such pair into one token."""

    def __init__(self, glue: frozenset[str] = frozenset()) -> None:
        self.glue = glue
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []
        self.encodes = 0
        self.decodes = 0

    @property
    def calls(self) -> int:
        return self.encodes + self.decodes

    def encode(self, text: str) -> list[int]:
        self.encodes += 1
        ids = []
        for word in text.split():
            if word not in self.vocab:
                self.vocab[word] = len(self.words)
                self.words.append(word)
            ids.append(self.vocab[word])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        self.decodes += 1
        text = ""
        for i in ids:
            word = self.words[i]
            if text and word in self.glue:
                text += word
            else:
                text += (" " if text else "") + word
        return text

    def count(self, text: str) -> int:
        """Tokens of ``text``, without counting a call."""
        return len(text.split())


class NeverRoundTrips(WordTokenizer):
    """Decodes every cut to one word: no cut re-encodes to the length asked for."""

    def decode(self, ids: Sequence[int]) -> str:
        self.decodes += 1
        return "word"


def served(tokenizer: WordTokenizer | None, context_tokens: int | None = None) -> ServedModel:
    return ServedModel(backend="x", model="m", endpoint=None, engine="e", tokenizer=tokenizer,
                       context_tokens=context_tokens)


def take(source: MadeAhead | BuiltinPrompts, n: int) -> list[Prompt]:
    return [source.next_prompt() for _ in range(n)]


def first_message(prompt: Prompt) -> str:
    return prompt.messages()[0]["content"]


def tag_of(prompt: Prompt) -> str:
    match = TAG.match(first_message(prompt))
    assert match is not None, prompt
    return match[0]


def untagged(prompt: Prompt) -> str:
    """The user text without the tag (the tag sits on the first message of a chat)."""
    if prompt.history:
        return prompt.text
    assert TAG.match(prompt.text) is not None, prompt.text
    return prompt.text[len("[12345678] "):]


# --- Lengths and parse_lengths -------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("512", Lengths("fixed", 512)),
    (" 512 ", Lengths("fixed", 512)),
    ("256..1024", Lengths("uniform", 256, 1024)),
    ("7..7", Lengths("uniform", 7, 7)),
    ("512~128", Lengths("normal", 512, 128)),
    ("1", Lengths("fixed", 1)),
])
def test_parse_lengths_reads_fixed_uniform_and_normal(text: str, expected: Lengths) -> None:
    assert parse_lengths(text, name="len") == expected


@pytest.mark.parametrize("text", ["", "abc", "-5", "1.5", "512..", "..9", "5~", "5-9", "5 .. 9",
                                  "512~12.5", "1e3"])
def test_parse_lengths_refuses_text_that_is_no_length(text: str) -> None:
    with pytest.raises(ValueError, match=r"^size: expected N, LOW\.\.HIGH or MEAN~STDEV"):
        parse_lengths(text, name="size")


def test_parse_lengths_refuses_a_range_that_ends_below_its_start() -> None:
    with pytest.raises(ValueError, match=r"^size: '20\.\.10' ends below where it starts$"):
        parse_lengths("20..10", name="size")


@pytest.mark.parametrize("text", ["15", "10..100", "15~3"])
def test_parse_lengths_refuses_lengths_below_the_floor(text: str) -> None:
    with pytest.raises(ValueError, match=f"^in: '{re.escape(text)}' is below 16 tokens"):
        parse_lengths(text, name="in", floor=16)


def test_parse_lengths_floor_itself_is_allowed_and_zero_is_not_by_default() -> None:
    assert parse_lengths("16", name="in", floor=16) == Lengths("fixed", 16)
    assert parse_lengths("16..17", name="in", floor=16) == Lengths("uniform", 16, 17)
    with pytest.raises(ValueError, match="below 1 tokens"):
        parse_lengths("0", name="out")


def test_fixed_lengths_always_sample_their_value() -> None:
    rng = random.Random(0)
    assert {Lengths("fixed", 300).sample(rng) for _ in range(100)} == {300}


def test_uniform_lengths_stay_in_bounds_and_reach_both_ends() -> None:
    rng = random.Random(1)
    draws = [Lengths("uniform", 5, 9).sample(rng) for _ in range(2000)]
    assert set(draws) == {5, 6, 7, 8, 9}


def test_normal_lengths_have_the_mean_and_stdev_asked_for() -> None:
    rng = random.Random(2)
    draws = [Lengths("normal", 500, 50).sample(rng) for _ in range(5000)]
    # Standard errors: 50/sqrt(5000) = 0.7 for the mean, about 0.5 for the stdev.
    assert statistics.fmean(draws) == pytest.approx(500, abs=3)
    assert statistics.pstdev(draws) == pytest.approx(50, abs=2)
    assert all(isinstance(d, int) for d in draws)


def test_normal_lengths_never_go_below_the_floor() -> None:
    rng = random.Random(3)
    draws = [Lengths("normal", 20, 30).sample(rng, floor=16) for _ in range(5000)]
    assert min(draws) == 16  # mean 20, stdev 30: about 45 % of raw draws are below 16
    assert sum(d == 16 for d in draws) > 1500
    assert max(draws) > 80


def test_same_seed_same_draws() -> None:
    lengths = Lengths("normal", 100, 30)
    a, b = random.Random(9), random.Random(9)
    assert [lengths.sample(a) for _ in range(50)] == [lengths.sample(b) for _ in range(50)]


def test_largest_and_describe() -> None:
    assert Lengths("fixed", 512).largest == 512
    assert Lengths("uniform", 256, 1024).largest == 1024
    assert Lengths("normal", 512, 128).largest == 1024
    assert Lengths("fixed", 512).describe() == "512"
    assert Lengths("uniform", 256, 1024).describe() == "256..1024"
    assert Lengths("normal", 512, 128).describe() == "512~128"


# --- exact_text ----------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [16, 17, 50, 333])
def test_exact_text_is_exact_with_a_round_tripping_tokenizer(tokens: int) -> None:
    tokenizer = WordTokenizer()
    text = exact_text(tokenizer, tokens, random.Random(tokens), "[head]")
    assert text.startswith("[head] ")
    assert tokenizer.count(text) == tokens
    assert tokenizer.decodes == 1  # the first cut was right: nothing to re-count


def test_exact_text_recounts_where_the_cut_does_not_round_trip() -> None:
    recounted = 0
    for seed in range(40):
        tokenizer = WordTokenizer(GLUED)
        text = exact_text(tokenizer, 64, random.Random(seed), "[head]")
        assert len(tokenizer.encode(text)) == 64, seed
        assert text.startswith("[head] ")
        recounted += tokenizer.decodes > 1
    # 3 glued words of ~220, 63 words a prompt: most prompts have one to re-count.
    assert recounted >= 20


def test_exact_text_gives_up_when_the_tokenizer_never_round_trips() -> None:
    tokenizer = NeverRoundTrips()
    with pytest.raises(ExactLengthError, match=r"exactly 20 tokens .*do not round-trip"):
        exact_text(tokenizer, 20, random.Random(0), "[head]")
    assert tokenizer.decodes == 8


def test_exact_text_is_the_same_for_the_same_seed() -> None:
    a = exact_text(WordTokenizer(), 40, random.Random(5), "[h]")
    b = exact_text(WordTokenizer(), 40, random.Random(5), "[h]")
    c = exact_text(WordTokenizer(), 40, random.Random(6), "[h]")
    assert a == b
    assert a != c


# --- parse_dataset -------------------------------------------------------------------------


def test_builtin_dataset() -> None:
    spec = parse_dataset("builtin")
    assert spec == DatasetSpec("builtin", "builtin")
    assert not spec.needs_tokenizer


def test_random_dataset_with_every_key() -> None:
    spec = parse_dataset("random:input=256..1024,output=64~16")
    assert spec.kind == "random"
    assert spec.text == "random:input=256..1024,output=64~16"
    assert spec.input_lengths == Lengths("uniform", 256, 1024)
    assert spec.output_lengths == Lengths("normal", 64, 16)
    assert spec.needs_tokenizer


def test_random_dataset_without_output_leaves_answers_at_max_tokens() -> None:
    spec = parse_dataset("random:input=512")
    assert spec.input_lengths == Lengths("fixed", 512)
    assert spec.output_lengths is None


@pytest.mark.parametrize(("text", "message"), [
    ("random:output=128", r"^random: give the prompt length"),
    ("random:", r"^random: give the prompt length"),
    ("random:input=8", r"^random input: '8' is below 16 tokens"),
    ("random:input=512,output=0", r"^random output: '0' is below 1 tokens"),
    ("random:input=512,output=9..3", r"^random output: '9\.\.3' ends below"),
    ("random:input", r"^random: input needs a value \(input=\.\.\.\)$"),
    ("random:input=512,output", r"^random: output needs a value"),
    ("random:inputs=512", r"^random: unknown setting 'inputs'; valid: input, output$"),
    ("random:input=512,multi-turn", r"^random: unknown setting 'multi-turn'"),
    ("random:input=lots", r"^random input: expected N"),
])
def test_random_dataset_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dataset(text)


@pytest.mark.parametrize(("text", "inputs", "outputs"), [
    ("random:D(512,64)", Lengths("fixed", 512), Lengths("fixed", 64)),
    ("random: D(512, 64)", Lengths("fixed", 512), Lengths("fixed", 64)),
    ("random:N(480,240)/(300,150)", Lengths("normal", 480, 240), Lengths("normal", 300, 150)),
    ("random:U(50,100)/(200,250)", Lengths("uniform", 50, 100), Lengths("uniform", 200, 250)),
])
def test_genai_bench_scenarios(text: str, inputs: Lengths, outputs: Lengths) -> None:
    spec = parse_dataset(text)
    assert spec == DatasetSpec("random", text, input_lengths=inputs, output_lengths=outputs)
    assert spec.needs_tokenizer


@pytest.mark.parametrize(("text", "message"), [
    ("random:D(512,64)/(1,2)", r"^random: D\(input,output\) takes one pair"),
    ("random:N(480,240)", r"^random: N\(\.\.\.\) needs an input and an output pair"),
    ("random:U(50,100)", r"^random: U\(\.\.\.\) needs an input and an output pair"),
    ("random:U(100,50)/(200,250)", r"^random input: 'U\(100,50\)/\(200,250\)' ends below"),
    ("random:U(50,100)/(250,200)", r"^random output: 'U\(50,100\)/\(250,200\)' ends below"),
    ("random:D(8,64)", r"^random input: at least 16 tokens, got 'D\(8,64\)'$"),
    ("random:N(10,5)/(300,150)", r"^random input: at least 16 tokens"),
    ("random:U(15,100)/(200,250)", r"^random input: at least 16 tokens"),
    ("random:D(512,0)", r"^random output: at least 1 token"),
    ("random:U(50,100)/(0,5)", r"^random output: at least 1 token"),
    ("random:X(512,64)", r"^random: unknown setting 'X\(512'"),
    ("random:d(512,64)", r"^random: unknown setting 'd\(512'"),
])
def test_genai_bench_scenario_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dataset(text)


@pytest.mark.parametrize("text", ["csv:data.csv", "Random:input=512", "", "sharegpt2:x"])
def test_unknown_dataset_kind(text: str) -> None:
    kind = text.partition(":")[0]
    with pytest.raises(ValueError, match=rf"^unknown dataset {re.escape(repr(kind))}; expected "
                                         "one of builtin, random, sharegpt, jsonl, shared-prefix"):
        parse_dataset(text)


def test_builtin_takes_no_settings() -> None:
    with pytest.raises(ValueError, match=r"^builtin: unknown setting 'x'; valid: none$"):
        parse_dataset("builtin:x=1")


@pytest.mark.parametrize("text", ["sharegpt", "sharegpt:", "sharegpt:output=5", "jsonl:",
                                  "jsonl:max-input=9"])
def test_file_datasets_need_a_path(text: str) -> None:
    kind = text.partition(":")[0]
    with pytest.raises(ValueError, match=f"^{kind}: give the file's path, e.g. {kind}:data/"):
        parse_dataset(text)


def test_sharegpt_file_loads_its_first_turns() -> None:
    spec = parse_dataset(f"sharegpt:{SHAREGPT}")
    assert spec.kind == "sharegpt"
    assert spec.path == SHAREGPT
    assert spec.entries == load_sharegpt(SHAREGPT)
    assert len(spec.entries) == 37  # 40 conversations, 3 of them unusable
    assert spec.entries[0].text == "What is the difference between a process and a thread?"
    assert spec.entries[0].history == ()
    assert spec.entries[0].reference_answer is not None
    assert spec.entries[0].reference_answer.startswith("A process is an independent program")
    assert (spec.output_lengths, spec.max_input, spec.multi_turn) == (None, None, False)
    assert not spec.needs_tokenizer


def test_sharegpt_file_with_every_key() -> None:
    spec = parse_dataset(f"sharegpt:{SHAREGPT},output=128,max-input=1024,multi-turn")
    assert spec.output_lengths == Lengths("fixed", 128)
    assert spec.max_input == 1024
    assert spec.multi_turn
    assert spec.entries == load_sharegpt(SHAREGPT, multi_turn=True)
    assert len(spec.entries) == 49
    assert spec.needs_tokenizer  # max-input counts tokens


def test_max_input_alone_needs_a_tokenizer_and_output_alone_does_not() -> None:
    assert parse_dataset(f"jsonl:{JSONL},max-input=64").needs_tokenizer
    assert not parse_dataset(f"jsonl:{JSONL},output=64").needs_tokenizer


def test_jsonl_file_loads_prompts_and_chats() -> None:
    spec = parse_dataset(f"jsonl:{JSONL},output=32")
    assert spec.kind == "jsonl"
    assert spec.entries == load_jsonl(JSONL)
    assert len(spec.entries) == 30  # 31 lines, one blank
    assert spec.entries[1].text == "Write a limerick about a cat who learns to code."
    assert spec.entries[1].output_tokens == 64
    assert spec.entries[5].history == (("system", "You answer like a patient maths tutor."),)
    assert spec.output_lengths == Lengths("fixed", 32)
    assert not spec.multi_turn


@pytest.mark.parametrize("kind", ["sharegpt", "jsonl"])
@pytest.mark.parametrize("output", ["10..20", "64~8"])
def test_file_datasets_refuse_an_output_range(kind: str, output: str) -> None:
    path = SHAREGPT if kind == "sharegpt" else JSONL
    with pytest.raises(ValueError, match=rf"^{kind} output: one length in tokens \(e\.g\. "
                                         rf"output=128\), got {re.escape(repr(output))}$"):
        parse_dataset(f"{kind}:{path},output={output}")


@pytest.mark.parametrize(("setting", "message"), [
    ("max-input=0", r"^max-input: expected a whole number of at least 1, got '0'$"),
    ("max-input=ten", r"^max-input: expected a whole number of at least 1, got 'ten'$"),
    ("max-input", r"^sharegpt: max-input needs a value"),
    ("output=0", r"^sharegpt output: '0' is below 1 tokens"),
    ("input=5", r"^sharegpt: unknown setting 'input'; valid: output, max-input, multi-turn$"),
])
def test_sharegpt_setting_errors(setting: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dataset(f"sharegpt:{SHAREGPT},{setting}")


def test_jsonl_has_no_multi_turn() -> None:
    with pytest.raises(ValueError, match=r"^jsonl: unknown setting 'multi-turn'; valid: "
                                         "output, max-input$"):
        parse_dataset(f"jsonl:{JSONL},multi-turn")


def test_a_missing_file_stops_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(DatasetFileError, match=f"^{re.escape(str(missing))}: no such file$"):
        parse_dataset(f"sharegpt:{missing}")


@pytest.mark.parametrize("text", ["shared-prefix", "shared-prefix:"])
def test_shared_prefix_defaults(text: str) -> None:
    spec = parse_dataset(text)
    assert spec.kind == "shared-prefix"
    assert spec.counts == {"documents": 4, "questions": 4, "document": 1024, "question": 32}
    assert spec.output_lengths == Lengths("fixed", 32)
    assert spec.needs_tokenizer


def test_shared_prefix_with_every_key() -> None:
    spec = parse_dataset("shared-prefix:documents=2,questions=3,document=64,question=8,output=16")
    assert spec.counts == {"documents": 2, "questions": 3, "document": 64, "question": 8}
    assert spec.output_lengths == Lengths("fixed", 16)


def test_shared_prefix_keeps_the_defaults_it_is_not_given() -> None:
    spec = parse_dataset("shared-prefix:questions=9")
    assert spec.counts == {"documents": 4, "questions": 9, "document": 1024, "question": 32}
    assert spec.output_lengths == Lengths("fixed", 32)


@pytest.mark.parametrize(("setting", "message"), [
    ("document=15", r"^shared-prefix document: at least 16 tokens$"),
    ("documents=0", r"^documents: expected a whole number of at least 1, got '0'$"),
    ("questions=-1", r"^questions: expected a whole number of at least 1, got '-1'$"),
    ("question=x", r"^question: expected a whole number of at least 1, got 'x'$"),
    ("output=10..20", r"^shared-prefix output: one length in tokens"),
    ("output=0", r"^shared-prefix output: '0' is below 1 tokens"),
    ("input=5", r"^shared-prefix: unknown setting 'input'; valid: documents, questions, "
                "document, question, output$"),
    ("documents", r"^shared-prefix: documents needs a value"),
])
def test_shared_prefix_errors(setting: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dataset(f"shared-prefix:{setting}")


# --- MadeAhead and BuiltinPrompts.prepare --------------------------------------------------


class Counting(MadeAhead):
    def __init__(self) -> None:
        super().__init__()
        self.made = 0

    def _make(self) -> Prompt:
        self.made += 1
        return Prompt(f"prompt {self.made}")


def test_made_ahead_prepares_up_to_count_and_counts_what_the_window_makes() -> None:
    source = Counting()
    source.prepare(3)
    source.prepare(2)  # three are ready already
    assert source.made == 3
    assert [p.text for p in take(source, 3)] == ["prompt 1", "prompt 2", "prompt 3"]
    assert (source.made, source.made_in_window) == (3, 0)
    assert source.next_prompt().text == "prompt 4"
    assert (source.made, source.made_in_window) == (4, 1)
    source.prepare(1)
    assert source.next_prompt().text == "prompt 5"
    assert source.made_in_window == 1


def test_made_ahead_needs_a_make() -> None:
    with pytest.raises(NotImplementedError):
        MadeAhead().next_prompt()


def test_builtin_prepare_changes_nothing() -> None:
    prepared, fresh = BuiltinPrompts(seed=4, salt="s"), BuiltinPrompts(seed=4, salt="s")
    prepared.prepare(100)
    texts = [p.text for p in take(prepared, 20)]
    assert texts == [p.text for p in take(fresh, 20)]
    assert texts[0].startswith(unique_tag("s", 1) + " ")
    assert texts[19].startswith(unique_tag("s", 20) + " ")


# --- RandomPrompts -------------------------------------------------------------------------


@pytest.mark.parametrize("glue", [frozenset(), GLUED])
def test_random_prompts_are_exactly_their_input_tokens(glue: frozenset[str]) -> None:
    tokenizer = WordTokenizer(glue)
    source = RandomPrompts(tokenizer, input_lengths=Lengths("uniform", 16, 120),
                           output_lengths=Lengths("fixed", 128), seed=1, salt="s")
    prompts = take(source, 60)
    for prompt in prompts:
        assert prompt.input_tokens is not None and 16 <= prompt.input_tokens <= 120
        assert len(tokenizer.encode(prompt.text)) == prompt.input_tokens
        assert prompt.output_tokens == 128
        assert prompt.history == ()
    assert len({p.input_tokens for p in prompts}) > 30


def test_random_prompts_lengths_follow_the_spec() -> None:
    source = RandomPrompts(WordTokenizer(), input_lengths=Lengths("normal", 40, 10),
                           output_lengths=Lengths("uniform", 3, 5), seed=2, salt="s")
    prompts = take(source, 300)
    outputs = [p.output_tokens for p in prompts]
    assert set(outputs) == {3, 4, 5}
    inputs = [p.input_tokens or 0 for p in prompts]
    assert min(inputs) >= MIN_PROMPT_TOKENS
    assert statistics.fmean(inputs) == pytest.approx(40, abs=2)


def test_random_prompts_without_output_leave_the_run_s_max_tokens() -> None:
    source = RandomPrompts(WordTokenizer(), input_lengths=Lengths("fixed", 20), salt="s")
    prompt = source.next_prompt()
    assert prompt.output_tokens is None
    assert prompt.max_tokens(77) == 77
    assert prompt.input_tokens == 20


def test_random_prompts_same_seed_and_salt_same_prompts() -> None:
    def make(seed: int, salt: str) -> list[Prompt]:
        return take(RandomPrompts(WordTokenizer(), input_lengths=Lengths("uniform", 16, 64),
                                  output_lengths=Lengths("uniform", 1, 100), seed=seed,
                                  salt=salt), 20)

    first = make(7, "abc")
    assert first == make(7, "abc")
    other_seed = make(8, "abc")
    assert [p.text for p in first] != [p.text for p in other_seed]
    other_salt = make(7, "xyz")
    # The seed alone fixes the lengths; the salt changes every prompt from its first token on.
    assert [(p.input_tokens, p.output_tokens) for p in first] == [
        (p.input_tokens, p.output_tokens) for p in other_salt]
    for a, b in zip(first, other_salt, strict=True):
        assert a.text.split()[0] != b.text.split()[0]
        assert a.text.split()[1:] == b.text.split()[1:]


def test_random_prompts_each_have_their_own_tag() -> None:
    source = RandomPrompts(WordTokenizer(), input_lengths=Lengths("fixed", 16), salt="s")
    prompts = take(source, 200)
    assert [p.text.split()[0] for p in prompts] == [unique_tag("s", k) for k in range(1, 201)]
    assert len({tag_of(p) for p in prompts}) == 200


def test_random_prompts_get_a_fresh_salt_unless_given() -> None:
    a = RandomPrompts(WordTokenizer(), input_lengths=Lengths("fixed", 16))
    b = RandomPrompts(WordTokenizer(), input_lengths=Lengths("fixed", 16))
    assert re.fullmatch("[0-9a-f]{8}", a.salt)
    assert a.salt != b.salt


def test_random_prompts_made_ahead_cost_no_tokenizer_call_in_the_window() -> None:
    tokenizer = WordTokenizer()
    source = RandomPrompts(tokenizer, input_lengths=Lengths("fixed", 32),
                           output_lengths=Lengths("fixed", 8), seed=3, salt="s")
    source.prepare(5)
    calls = tokenizer.calls
    assert calls > 0
    prompts = take(source, 5)
    assert tokenizer.calls == calls
    assert source.made_in_window == 0
    assert source.describe() == PromptOrigin("random", 3, "s", {"input_tokens": "32",
                                                                 "output_tokens": "8"},
                                             about_caching=False, made_in_window=0)
    late = source.next_prompt()
    assert tokenizer.calls > calls
    assert source.made_in_window == 1
    assert source.describe().made_in_window == 1
    assert [p.text.split()[0] for p in (*prompts, late)] == [
        unique_tag("s", k) for k in range(1, 7)]


def test_random_prompts_describe_ranges() -> None:
    source = RandomPrompts(WordTokenizer(), input_lengths=Lengths("normal", 512, 128), seed=9,
                           salt="q")
    assert source.describe() == PromptOrigin("random", 9, "q", {"input_tokens": "512~128",
                                                                 "output_tokens": None},
                                             about_caching=False, made_in_window=0)
    assert source.about_caching is False


def test_random_prompts_pass_the_tokenizer_error_on() -> None:
    source = RandomPrompts(NeverRoundTrips(), input_lengths=Lengths("fixed", 20), salt="s")
    with pytest.raises(ExactLengthError):
        source.prepare(1)


# --- FilePrompts ---------------------------------------------------------------------------


def words(n: int, word: str = "w") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


def test_file_prompts_order_is_the_seed_s() -> None:
    entries = [DatasetEntry(f"prompt number {k}") for k in range(10)]
    expected = list(entries)
    random.Random(3).shuffle(expected)
    a = FilePrompts(entries, kind="jsonl", path="p", tokenizer=None, seed=3, salt="a")
    b = FilePrompts(entries, kind="jsonl", path="p", tokenizer=None, seed=3, salt="b")
    c = FilePrompts(entries, kind="jsonl", path="p", tokenizer=None, seed=4, salt="a")
    texts = [untagged(p) for p in take(a, 10)]
    assert texts == [e.text for e in expected]
    assert [untagged(p) for p in take(b, 10)] == texts
    other = [untagged(p) for p in take(c, 10)]
    assert other != texts
    assert sorted(other) == sorted(texts)


def test_file_prompts_without_a_tokenizer_filter_nothing() -> None:
    entries = load_jsonl(JSONL)
    source = FilePrompts(entries, kind="jsonl", path=str(JSONL), tokenizer=None, seed=1,
                         salt="s")
    prompts = take(source, len(entries))
    by_text = {e.text: e for e in entries}
    assert sorted(untagged(p) for p in prompts) == sorted(by_text)
    for prompt in prompts:
        entry = by_text[untagged(prompt)]
        assert prompt.output_tokens == entry.output_tokens  # the line's, or None
        assert prompt.input_tokens is None
        assert len(prompt.history) == len(entry.history)
    assert sum(p.output_tokens is None for p in prompts) == 20  # 10 lines give one
    assert source.left_out == 0
    assert "left_out_by_length" not in source.describe().details


def test_file_prompts_output_setting_overrides_the_file() -> None:
    entries = load_jsonl(JSONL)
    source = FilePrompts(entries, kind="jsonl", path="p", tokenizer=None, output_tokens=77,
                         salt="s")
    assert {p.output_tokens for p in take(source, 30)} == {77}
    assert source.describe().details["output_tokens"] == 77


def test_file_prompts_answers_as_long_as_the_reference_answer() -> None:
    entries = load_sharegpt(SHAREGPT)
    tokenizer = WordTokenizer()
    source = FilePrompts(entries, kind="sharegpt", path="p", tokenizer=tokenizer, salt="s")
    usable = [e for e in entries if tokenizer.count(e.text) >= 4
              and e.reference_answer is not None and tokenizer.count(e.reference_answer) >= 4]
    assert len(usable) == 32  # five have a prompt or a reply of fewer than 4 words
    prompts = take(source, len(usable))
    by_text = {e.text: e for e in usable}
    assert sorted(untagged(p) for p in prompts) == sorted(by_text)
    for prompt in prompts:
        reference = by_text[untagged(prompt)].reference_answer
        assert reference is not None
        assert prompt.output_tokens == tokenizer.count(reference)


def length_entries() -> list[DatasetEntry]:
    return [
        DatasetEntry(words(6, "a"), reference_answer=words(10)),  # kept, answer 10
        DatasetEntry(words(3, "b"), reference_answer=words(10)),  # prompt too short
        DatasetEntry(words(5, "c"), reference_answer=words(3)),  # reply too short
        DatasetEntry(words(11, "d"), reference_answer=words(4)),  # over max-input 10
        DatasetEntry(words(8, "e"), reference_answer=words(9)),  # 17 > context 16
        DatasetEntry(words(4, "f"), reference_answer=words(4)),  # kept: both 4
        DatasetEntry(words(5, "g")),  # kept: no answer length, 5 tokens fit
        DatasetEntry(words(10, "h"), reference_answer=words(6)),  # kept: 10 + 6 = 16
        DatasetEntry(words(4, "i"), reference_answer=words(4),  # 4 + 4 + history 11 > 16
                     history=(("user", words(7, "x")), ("assistant", words(3, "y")))),
        DatasetEntry(words(5, "j"), output_tokens=2),  # the line's answer of 2: too short
        DatasetEntry(words(6, "k"), output_tokens=20),  # 26 > 16
    ]


KEPT = {words(6, "a"): 10, words(4, "f"): 4, words(5, "g"): None, words(10, "h"): 6}


def test_file_prompts_leave_out_what_is_too_short_too_long_or_overflows() -> None:
    entries = length_entries()
    source = FilePrompts(entries, kind="sharegpt", path="p", tokenizer=WordTokenizer(),
                         max_input=10, context_tokens=16, seed=5, salt="s")
    prompts = take(source, len(KEPT))
    assert {untagged(p): p.output_tokens for p in prompts} == KEPT
    # Left out so far: the entries of the seed's order before the last prompt kept.
    order = list(entries)
    random.Random(5).shuffle(order)
    last = max(i for i, e in enumerate(order) if e.text in KEPT)
    assert source.left_out == (last + 1) - len(KEPT)
    assert source.describe().details.get("left_out_by_length", 0) == source.left_out
    # A second pass leaves the same seven out again, keeps the same four.
    take(source, len(KEPT))
    assert source.left_out == (last + 1) - len(KEPT) + len(entries) - len(KEPT)
    assert source.describe().details["left_out_by_length"] == source.left_out


def test_file_prompts_with_no_limits_keep_every_long_enough_entry() -> None:
    entries = length_entries()
    source = FilePrompts(entries, kind="sharegpt", path="p", tokenizer=WordTokenizer(),
                         salt="s")
    prompts = take(source, 8)
    assert {untagged(p) for p in prompts} == {
        e.text for e in entries if e.text.split()[0][0] not in "bcj"}


def test_file_prompts_stop_when_every_entry_is_left_out() -> None:
    entries = [DatasetEntry("too short"), DatasetEntry("one")]
    source = FilePrompts(entries, kind="jsonl", path="data.jsonl", tokenizer=WordTokenizer(),
                         max_input=100, salt="s")
    with pytest.raises(ValueError, match=r"^data\.jsonl: every prompt was left out by its "
                                         r"length \(max-input 100, context None\)$"):
        source.next_prompt()


def test_file_prompts_need_entries() -> None:
    with pytest.raises(ValueError, match=r"^empty\.jsonl: no prompts$"):
        FilePrompts([], kind="jsonl", path="empty.jsonl", tokenizer=None)


def test_file_prompts_start_over_behind_new_tags() -> None:
    entries = [DatasetEntry(f"prompt {k}") for k in range(3)]
    source = FilePrompts(entries, kind="jsonl", path="p", tokenizer=None, salt="s")
    prompts = take(source, 3)
    assert "passes_over_the_file" not in source.describe().details  # one pass, not a second
    prompts.append(source.next_prompt())
    assert source.describe().details["passes_over_the_file"] == 2
    prompts += take(source, 5)
    assert source.describe().details["passes_over_the_file"] == 3
    assert [tag_of(p) for p in prompts] == [unique_tag("s", k) for k in range(1, 10)]
    assert len({p.text for p in prompts}) == 9  # no prompt sent twice
    assert [untagged(p) for p in prompts[3:6]] == [untagged(p) for p in prompts[:3]]


def chats() -> list[DatasetEntry]:
    a1 = DatasetEntry("a one", reference_answer="A1")
    a2 = DatasetEntry("a two", history=(("user", "a one"), ("assistant", "A1")),
                      reference_answer="A2")
    a3 = DatasetEntry("a three", history=(*a2.history, ("user", "a two"), ("assistant", "A2")))
    b1 = DatasetEntry("b one", reference_answer="B1")
    b2 = DatasetEntry("b two", history=(("user", "b one"), ("assistant", "B1")))
    c1 = DatasetEntry("c one")
    return [a1, a2, a3, b1, b2, c1]


@pytest.mark.parametrize("seed", range(6))
def test_multi_turn_keeps_each_chat_in_order_behind_one_tag(seed: int) -> None:
    entries = chats()
    source = FilePrompts(entries, kind="sharegpt", path="p", tokenizer=None, multi_turn=True,
                         seed=seed, salt="s")
    assert source.about_caching is True
    first, second = take(source, 6), take(source, 6)
    for one_pass in (first, second):
        turns: dict[str, list[Prompt]] = {}
        for prompt in one_pass:
            turns.setdefault(tag_of(prompt), []).append(prompt)
        assert len(turns) == 3  # one tag per chat
        by_chat = {untagged(ps[0])[0]: ps for ps in turns.values()}
        assert {k: [p.text.removeprefix(tag_of(p) + " ") for p in v]
                for k, v in by_chat.items()} == {
            "a": ["a one", "a two", "a three"], "b": ["b one", "b two"], "c": ["c one"]}
        for chat in turns.values():
            tag = tag_of(chat[0])
            assert chat[0].text.startswith(tag + " ")
            assert chat[0].history == ()
            for earlier, later in itertools.pairwise(chat):
                # A turn's history is the earlier turns: the tag opens the first message.
                assert later.history[:len(earlier.history)] == earlier.history
                assert later.history[len(earlier.history)] == ("user", earlier.text)
                assert later.history[0][1].startswith(tag + " ")
                assert TAG.search(later.text) is None
        # The chats stay whole and in turn order, one after the other.
        assert [tag_of(p) for p in one_pass] == [
            t for t, ps in turns.items() for _ in ps]
    assert {tag_of(p) for p in first}.isdisjoint({tag_of(p) for p in second})
    # Nothing of the first pass is sent again: every first message is new.
    assert {first_message(p) for p in first}.isdisjoint({first_message(p) for p in second})


def test_multi_turn_on_the_sharegpt_sample() -> None:
    entries = load_sharegpt(SHAREGPT, multi_turn=True)
    source = FilePrompts(entries, kind="sharegpt", path="p", tokenizer=None, multi_turn=True,
                         seed=2, salt="s")
    prompts = take(source, len(entries))
    turns: dict[str, list[Prompt]] = {}
    for prompt in prompts:
        turns.setdefault(tag_of(prompt), []).append(prompt)
    assert len(turns) == 37  # one tag per conversation
    assert sorted(len(chat) for chat in turns.values())[-6:] == [2, 2, 2, 3, 3, 3]
    for chat in turns.values():
        assert [len(p.history) for p in chat] == [
            len(chat[0].history) + 2 * i for i in range(len(chat))]


def test_single_turn_files_are_not_about_caching() -> None:
    source = FilePrompts(chats(), kind="sharegpt", path="p", tokenizer=None, salt="s")
    assert source.about_caching is False
    # Without multi-turn every entry is its own conversation with its own tag.
    assert len({tag_of(p) for p in take(source, 6)}) == 6


def test_file_prompts_describe() -> None:
    source = FilePrompts(chats(), kind="sharegpt", path="d.json", tokenizer=None, seed=4,
                         salt="s")
    assert source.describe() == PromptOrigin("sharegpt", 4, "s", {"path": "d.json"},
                                             about_caching=False, made_in_window=0)
    source.next_prompt()
    assert source.describe().made_in_window == 1


# --- SharedPrefixPrompts -------------------------------------------------------------------


def split(prompt: Prompt) -> tuple[str, str]:
    document, question = prompt.text.split("\n\n")
    return document, question


@pytest.mark.parametrize("glue", [frozenset(), GLUED])
def test_shared_prefix_goes_round_by_round_with_exact_documents(glue: frozenset[str]) -> None:
    tokenizer = WordTokenizer(glue)
    source = SharedPrefixPrompts(tokenizer, documents=3, questions=2, document_tokens=64,
                                 question_tokens=12, output_tokens=20, salt="s")
    assert source.size == 6
    prompts = take(source, 6)
    parts = [split(p) for p in prompts]
    documents = [d for d, _ in parts]
    questions = [q for _, q in parts]
    # Question 1 of every document, then question 2 of every document.
    assert documents[:3] == documents[3:]
    assert len(set(documents)) == 3
    assert [d.split()[0] for d in documents[:3]] == [unique_tag("s", k) for k in (1, 2, 3)]
    assert [q.split()[:2] for q in questions] == [["Question", "1:"]] * 3 + [
        ["Question", "2:"]] * 3
    assert len(set(questions)) == 6
    for document, question in parts:
        assert len(tokenizer.encode(document)) == 64
        assert len(tokenizer.encode(question)) == 12
    for prompt in prompts:
        assert (prompt.output_tokens, prompt.cache, prompt.input_tokens) == (20, True, None)


def test_shared_prefix_past_one_pass_the_documents_are_new() -> None:
    source = SharedPrefixPrompts(WordTokenizer(), documents=2, questions=2, document_tokens=32,
                                 question_tokens=8, salt="s")
    prompts = take(source, 6)
    documents = [split(p)[0] for p in prompts]
    assert [d.split()[0] for d in documents] == [unique_tag("s", k) for k in (1, 2, 1, 2, 3, 4)]
    assert set(documents[4:]).isdisjoint(documents[:4])
    assert split(prompts[4])[1].startswith("Question 1:")
    assert len({p.text for p in prompts}) == 6


def test_shared_prefix_cache_off_and_no_output_length() -> None:
    source = SharedPrefixPrompts(WordTokenizer(), documents=1, questions=2, document_tokens=16,
                                 question_tokens=4, output_tokens=None, cache=False, salt="s")
    assert [(p.cache, p.output_tokens) for p in take(source, 3)] == [(False, None)] * 3
    assert source.about_caching is True


def test_shared_prefix_same_seed_same_text() -> None:
    def make(seed: int) -> list[str]:
        source = SharedPrefixPrompts(WordTokenizer(), documents=2, questions=2,
                                     document_tokens=20, question_tokens=6, seed=seed,
                                     salt="s")
        return [p.text for p in take(source, 4)]

    assert make(1) == make(1)
    assert make(1) != make(2)


def test_shared_prefix_made_ahead_and_described() -> None:
    tokenizer = WordTokenizer()
    source = SharedPrefixPrompts(tokenizer, documents=2, questions=3, document_tokens=20,
                                 question_tokens=6, output_tokens=9, seed=5, salt="s")
    source.prepare(6)
    calls = tokenizer.calls
    take(source, 6)
    assert tokenizer.calls == calls
    assert source.describe() == PromptOrigin("shared-prefix", 5, "s", {
        "documents": 2, "questions": 3, "document_tokens": 20, "question_tokens": 6,
        "output_tokens": 9, "cache": True}, about_caching=True, made_in_window=0)
    source.next_prompt()
    assert source.describe().made_in_window == 1


# --- prompt_source -------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [None, parse_dataset("builtin")])
def test_builtin_source_for_no_dataset(spec: DatasetSpec | None) -> None:
    source = prompt_source(spec, served(None), seed=6)
    assert isinstance(source, BuiltinPrompts)
    assert source.seed == 6


@pytest.mark.parametrize("text", ["random:input=64", "shared-prefix",
                                  f"sharegpt:{SHAREGPT},max-input=100"])
def test_datasets_in_tokens_need_the_tokenizer(text: str) -> None:
    with pytest.raises(NoTokenizer) as raised:
        prompt_source(parse_dataset(text), served(None), seed=0)
    assert str(raised.value) == (f"--llmperf-dataset {text}: lengths in tokens need the model's "
                                 "tokenizer, and m on x (e) offers none")


def test_random_source_takes_the_spec_s_lengths() -> None:
    tokenizer = WordTokenizer()
    source = prompt_source(parse_dataset("random:input=20..40,output=64"), served(tokenizer), 3)
    assert isinstance(source, RandomPrompts)
    assert source.tokenizer is tokenizer
    assert source.input_lengths == Lengths("uniform", 20, 40)
    assert source.output_lengths == Lengths("fixed", 64)
    assert source.seed == 3
    assert source.next_prompt().output_tokens == 64


def test_shared_prefix_source_takes_the_spec_s_counts() -> None:
    tokenizer = WordTokenizer()
    spec = parse_dataset("shared-prefix:documents=2,questions=5,document=40,question=6,output=7")
    source = prompt_source(spec, served(tokenizer), 8)
    assert isinstance(source, SharedPrefixPrompts)
    assert source.tokenizer is tokenizer
    assert (source.documents, source.questions) == (2, 5)
    assert (source.document_tokens, source.question_tokens) == (40, 6)
    assert (source.output_tokens, source.cache, source.seed) == (7, True, 8)


def test_file_source_takes_the_spec_s_settings_and_the_model_s_context() -> None:
    tokenizer = WordTokenizer()
    spec = parse_dataset(f"sharegpt:{SHAREGPT},output=50,max-input=200,multi-turn")
    source = prompt_source(spec, served(tokenizer, context_tokens=4096), 2)
    assert isinstance(source, FilePrompts)
    assert (source.kind, source.path) == ("sharegpt", str(SHAREGPT))
    assert source.tokenizer is tokenizer
    assert (source.output_tokens, source.max_input, source.context_tokens) == (50, 200, 4096)
    assert (source.about_caching, source.seed) == (True, 2)
    assert source.next_prompt().output_tokens == 50


def test_file_source_without_token_lengths_works_without_a_tokenizer() -> None:
    source = prompt_source(parse_dataset(f"jsonl:{JSONL}"), served(None), 1)
    assert isinstance(source, FilePrompts)
    assert (source.kind, source.tokenizer, source.output_tokens) == ("jsonl", None, None)
    assert (source.max_input, source.context_tokens, source.about_caching) == (None, None, False)
    assert len(take(source, 30)) == 30
    assert source.left_out == 0

"""``--llmperf-dataset``: which prompts a run sends, checked before any server starts.

- ``builtin`` (the default): the built-in English and Chinese chat prompts.
- ``random:input=512,output=128``: prompts of an exact length in the model's tokens, answers
  forced to a length; each length fixed (``512``), uniform (``256..1024``) or normal
  (``512~128``).  genai-bench's scenarios work too: ``random:D(512,64)``,
  ``random:N(480,240)/(300,150)``, ``random:U(50,100)/(200,250)``.
- ``sharegpt:PATH``: a ShareGPT_V3 JSON file, first turn of each conversation;
  ``,multi-turn`` sends every turn with its history.  ``jsonl:PATH``: one JSON object per line
  (``prompt`` or ``messages``, optional ``output_tokens``).  Both take ``output=N`` (every
  answer that long) and ``max-input=N`` (longer prompts are left out, as vLLM's benchmark does).
- ``shared-prefix:documents=4,questions=8,document=1024,question=32,output=64``: long
  documents each asked several questions (SGLang's generated-shared-prefix): a cache test.
- ``trace:PATH``: a request trace (prompts.trace_files): each request's lengths and shared
  prompt blocks, and, replayed (``llmperf_replay``), its arrival times; ``--llmperf-trace-speed``
  and ``--llmperf-trace-window`` are applied here.

A file is read and checked here, so a malformed one stops pytest with its line before any
server starts; nothing is fetched from the internet.  What a spec keeps of a file is where a
seeded sample of its conversations lies (prompts.dataset_files): ``entries`` reads them back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pytest_llmperf.prompts.dataset_files import (
    CheckedFile,
    DatasetEntry,
    check_jsonl,
    check_sharegpt,
)
from pytest_llmperf.prompts.synthetic import MIN_PROMPT_TOKENS, Lengths, bounded, parse_lengths
from pytest_llmperf.prompts.trace_files import Trace, replayed_trace

__all__ = ["DatasetSpec", "parse_dataset"]

_KINDS = ("builtin", "random", "sharegpt", "jsonl", "shared-prefix", "trace")
_KEYS = {
    "builtin": (),
    "random": ("input", "output"),
    "sharegpt": ("output", "max-input", "multi-turn"),
    "jsonl": ("output", "max-input"),
    "shared-prefix": ("documents", "questions", "document", "question", "output"),
    "trace": (),
}
_SHARED_PREFIX_DEFAULTS = {"documents": "4", "questions": "4", "document": "1024",
                           "question": "32", "output": "32"}
_SCENARIO = re.compile(r"([DNU])\((\d+),(\d+)\)(?:/\((\d+),(\d+)\))?")


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed ``--llmperf-dataset``; ``file`` is a file's check, ``entries`` its prompts."""

    kind: str
    text: str  # as the user wrote it, for reports
    input_lengths: Lengths | None = None
    output_lengths: Lengths | None = None
    path: Path | None = None
    max_input: int | None = None
    multi_turn: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # shared-prefix sizes
    file: CheckedFile | None = field(default=None, repr=False)
    trace: Trace | None = field(default=None, repr=False)  # as replayed: sliced, sped up

    @property
    def entries(self) -> tuple[DatasetEntry, ...]:
        """A file's sampled entries, read back from it (each call reads them); none for
        generated prompts."""
        return () if self.file is None else self.file.entries()

    @property
    def sample_note(self) -> str | None:
        """``10000 of 94145 conversations`` where the file held more than a run keeps."""
        return None if self.file is None else self.file.sample_note

    @property
    def needs_tokenizer(self) -> bool:
        return self.kind in ("random", "shared-prefix", "trace") or self.max_input is not None


def parse_dataset(text: str, seed: int = 0, *, trace_speed: float = 1.0,
                  trace_window: tuple[float, float | None] | None = None) -> DatasetSpec:
    """The dataset ``text`` names; ValueError saying what is wrong (a file's own errors name
    the file and line).  ``seed`` (the run's) draws a large file's sample; a trace is replayed
    ``trace_speed`` times faster, only its ``trace_window`` (START, END seconds) where given."""
    kind, _, rest = text.strip().partition(":")
    if kind not in _KINDS:
        raise ValueError(f"unknown dataset {kind!r}; expected one of {', '.join(_KINDS)} "
                         "(e.g. random:input=512,output=128 or sharegpt:PATH)")
    if kind == "random" and _SCENARIO.fullmatch(rest.replace(" ", "")):
        return _scenario(text, rest.replace(" ", ""))
    path: Path | None = None
    parts = [part.strip() for part in rest.split(",")] if rest.strip() else []
    if kind in ("sharegpt", "jsonl", "trace"):
        if not parts or "=" in parts[0]:
            raise ValueError(f"{kind}: give the file's path, e.g. {kind}:data/prompts.json")
        path = Path(parts.pop(0)).expanduser()
    if kind == "trace":
        assert path is not None
        if parts:
            raise ValueError(f"trace: takes the file's path only (got {', '.join(parts)!r}); "
                             "--llmperf-trace-speed and --llmperf-trace-window shape the replay")
        return DatasetSpec(kind, text, path=path,
                           trace=replayed_trace(path, trace_speed, trace_window))
    values = _values(kind, parts)
    if kind == "builtin":
        return DatasetSpec(kind, text)
    output = (parse_lengths(values["output"], name=f"{kind} output", floor=1)
              if "output" in values else None)
    if output is not None and output.kind != "fixed" and kind != "random":
        raise ValueError(f"{kind} output: one length in tokens (e.g. output=128), got "
                         f"{values['output']!r}")
    if kind == "random":
        if "input" not in values:
            raise ValueError("random: give the prompt length, e.g. random:input=512,output=128")
        return DatasetSpec(kind, text, output_lengths=output, input_lengths=parse_lengths(
            values["input"], name="random input", floor=MIN_PROMPT_TOKENS))
    if kind == "shared-prefix":
        merged = {**_SHARED_PREFIX_DEFAULTS, **values}
        counts = {key: _positive(key, merged[key]) for key in
                  ("documents", "questions", "document", "question")}
        if counts["document"] < MIN_PROMPT_TOKENS:
            raise ValueError(f"shared-prefix document: at least {MIN_PROMPT_TOKENS} tokens")
        return DatasetSpec(kind, text, counts=counts, output_lengths=parse_lengths(
            merged["output"], name="shared-prefix output"))
    assert path is not None
    multi_turn = "multi-turn" in values
    max_input = _positive("max-input", values["max-input"]) if "max-input" in values else None
    checked = (check_sharegpt(path, multi_turn=multi_turn, seed=seed) if kind == "sharegpt"
               else check_jsonl(path, seed=seed))
    return DatasetSpec(kind, text, output_lengths=output, path=path, max_input=max_input,
                       multi_turn=multi_turn, file=checked)


def _values(kind: str, parts: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for part in parts:
        key, equals, value = part.partition("=")
        key = key.strip()
        if key not in _KEYS[kind]:
            valid = ", ".join(_KEYS[kind]) or "none"
            raise ValueError(f"{kind}: unknown setting {key!r}; valid: {valid}")
        if not equals and key != "multi-turn":
            raise ValueError(f"{kind}: {key} needs a value ({key}=...)")
        values[key] = value.strip()
    return values


def _positive(key: str, value: str) -> int:
    if not value.isdigit() or bounded(value, key) < 1:
        raise ValueError(f"{key}: expected a whole number of at least 1, got {value!r}")
    return int(value)


def _scenario(text: str, scenario: str) -> DatasetSpec:
    """genai-bench's ``D(in,out)``, ``N(mean,sd)/(mean,sd)``, ``U(lo,hi)/(lo,hi)``."""
    match = _SCENARIO.fullmatch(scenario)
    assert match is not None
    letter, a, b, c, d = match.groups()
    if letter == "D":
        if c is not None:
            raise ValueError(f"random: D(input,output) takes one pair, got {scenario!r}")
        lengths = (Lengths("fixed", bounded(a, "random input")),
                   Lengths("fixed", bounded(b, "random output")))
    elif c is None:
        raise ValueError(f"random: {letter}(...) needs an input and an output pair, e.g. "
                         f"{letter}(480,240)/(300,150)")
    else:
        kind: Literal["normal", "uniform"] = "normal" if letter == "N" else "uniform"
        lengths = (Lengths(kind, bounded(a, "random input"), bounded(b, "random input")),
                   Lengths(kind, bounded(c, "random output"), bounded(d, "random output")))
    for name, length in zip(("input", "output"), lengths, strict=True):
        if length.kind == "uniform" and length.second < length.first:
            raise ValueError(f"random {name}: {scenario!r} ends below where it starts")
    if lengths[0].first < MIN_PROMPT_TOKENS:
        raise ValueError(f"random input: at least {MIN_PROMPT_TOKENS} tokens, got {scenario!r}")
    if lengths[1].first < 1:
        raise ValueError(f"random output: at least 1 token, got {scenario!r}")
    return DatasetSpec("random", text, input_lengths=lengths[0], output_lengths=lengths[1])

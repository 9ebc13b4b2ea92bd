"""The prompt source a session sends to one served model, from ``--llmperf-dataset``."""

from __future__ import annotations

from pytest_llmperf.engines.base import ServedModel
from pytest_llmperf.prompts.builtin import BuiltinPrompts, PromptSource
from pytest_llmperf.prompts.dataset_spec import DatasetSpec
from pytest_llmperf.prompts.files import FilePrompts
from pytest_llmperf.prompts.shared_prefix import SharedPrefixPrompts
from pytest_llmperf.prompts.synthetic import RandomPrompts
from pytest_llmperf.prompts.trace_prompts import TracePrompts

__all__ = ["NoTokenizer", "prompt_source"]


class NoTokenizer(ValueError):
    """The dataset needs the model's tokenizer and the engine offers none."""


def prompt_source(spec: DatasetSpec | None, served: ServedModel, seed: int) -> PromptSource:
    """One source per served model and session: its offset advances over every test, so no
    prompt is sent twice to a server (EvalScope's dataset offset)."""
    if spec is None or spec.kind == "builtin":
        return BuiltinPrompts(seed=seed)
    tokenizer = served.tokenizer
    if spec.needs_tokenizer and tokenizer is None:
        raise NoTokenizer(f"--llmperf-dataset {spec.text}: lengths in tokens need the model's "
                          f"tokenizer, and {served.description} offers none")
    output = spec.output_lengths
    if spec.kind == "random":
        assert tokenizer is not None and spec.input_lengths is not None
        return RandomPrompts(tokenizer, input_lengths=spec.input_lengths,
                             output_lengths=output, seed=seed)
    if spec.kind == "shared-prefix":
        assert tokenizer is not None
        return SharedPrefixPrompts(
            tokenizer, documents=spec.counts["documents"], questions=spec.counts["questions"],
            document_tokens=spec.counts["document"], question_tokens=spec.counts["question"],
            output_tokens=output.first if output else None, seed=seed)
    if spec.kind == "trace":
        assert tokenizer is not None and spec.trace is not None
        return TracePrompts(tokenizer, spec.trace, seed=seed)
    # Files: the output length, where given, is one number (checked by parse_dataset).
    return FilePrompts(spec.entries, kind=spec.kind, path=str(spec.path), tokenizer=tokenizer,
                       output_tokens=output.first if output else None,
                       max_input=spec.max_input, context_tokens=served.context_tokens,
                       multi_turn=spec.multi_turn, seed=seed, sample=spec.sample_note)

"""BuiltinPrompts: deterministic per seed, and no two prompts share a cacheable prefix."""

from __future__ import annotations

import itertools
import re

import pytest

from pytest_llmperf.prompts.builtin import BUILTIN_PROMPTS, BuiltinPrompts
from pytest_llmperf.results.prompt_origin import PromptOrigin

TAG = re.compile(r"\[[0-9a-f]{8}\] ")


def draw(source: BuiltinPrompts, n: int) -> list[str]:
    return [source.next_prompt().text for _ in range(n)]


def body(prompt: str) -> str:
    """The prompt text after its unique tag."""
    match = TAG.match(prompt)
    assert match is not None, prompt
    return prompt[match.end() :]


def shared_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def test_same_seed_same_texts_and_a_fresh_salt_every_run() -> None:
    first, second = BuiltinPrompts(seed=3), BuiltinPrompts(seed=3)
    a, b = draw(first, 50), draw(second, 50)
    assert [body(p) for p in a] == [body(p) for p in b]  # the content is reproducible
    assert first.salt != second.salt  # 32 random bits: equal once in 4 billion runs
    # Caches match from the start: two runs part ways inside the tag.
    assert all(shared_prefix(x, y) < len("[12345678]") for x, y in zip(a, b, strict=True))
    assert first.describe() == PromptOrigin("built-in", 3, first.salt, {},
                                            about_caching=False, made_in_window=0)


def test_a_given_salt_repeats_a_run_exactly() -> None:
    first = draw(BuiltinPrompts(seed=3, salt="ab12"), 20)
    assert first == draw(BuiltinPrompts(seed=3, salt="ab12"), 20)


def test_other_seed_other_order() -> None:
    first = [body(p) for p in draw(BuiltinPrompts(seed=0), len(BUILTIN_PROMPTS))]
    second = [body(p) for p in draw(BuiltinPrompts(seed=1), len(BUILTIN_PROMPTS))]
    assert first != second
    assert sorted(first) == sorted(second)


def test_every_builtin_prompt_once_per_round() -> None:
    n = len(BUILTIN_PROMPTS)
    bodies = [body(p) for p in draw(BuiltinPrompts(seed=5), 2 * n)]
    assert sorted(bodies[:n]) == sorted(BUILTIN_PROMPTS)
    assert sorted(bodies[n:]) == sorted(BUILTIN_PROMPTS)


@pytest.mark.parametrize("seed", [0, 7])
def test_never_repeats_a_prompt_or_a_prefix(seed: int) -> None:
    prompts = draw(BuiltinPrompts(seed=seed), 200)
    assert len(set(prompts)) == len(prompts)
    assert len({p[:20] for p in prompts}) == len(prompts)


def test_prompts_differ_before_their_text_starts() -> None:
    """Any two prompts part ways inside their tags, so no text is a shared prefix."""
    prompts = sorted(draw(BuiltinPrompts(seed=0), 200))
    # the longest prefix a string shares with any other is shared with a neighbour in order
    for a, b in itertools.pairwise(prompts):
        shared = shared_prefix(a, b)
        assert shared < len(a) - len(body(a)), (a, b)
        assert shared < len(b) - len(body(b)), (a, b)


def test_builtin_prompts_are_english_and_chinese() -> None:
    assert len(set(BUILTIN_PROMPTS)) == len(BUILTIN_PROMPTS)
    english = [p for p in BUILTIN_PROMPTS if p.isascii()]
    chinese = [p for p in BUILTIN_PROMPTS if re.search(r"[\u4e00-\u9fff]", p)]
    assert english
    assert chinese
    assert len(english) + len(chinese) == len(BUILTIN_PROMPTS)


def test_custom_prompts_are_tagged_too() -> None:
    prompts = draw(BuiltinPrompts(seed=2, prompts=("only one",)), 5)
    assert [body(p) for p in prompts] == ["only one"] * 5
    assert len(set(prompts)) == 5


def test_empty_prompt_tuple_raises() -> None:
    with pytest.raises(ValueError, match="at least one prompt"):
        BuiltinPrompts(prompts=())

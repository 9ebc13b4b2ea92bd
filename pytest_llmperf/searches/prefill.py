"""Which prompt lengths a served model's context can hold with their answer."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TEMPLATE_MARGIN", "fitting_lengths"]

# Room left in the context for the chat template around an exact user text.
TEMPLATE_MARGIN = 64


def fitting_lengths(lengths: Sequence[int], context: int | None, max_tokens: int
                    ) -> tuple[list[int], list[int]]:
    """(the lengths a request fits into ``context`` with its answer, the rest)."""
    if context is None:
        return list(lengths), []
    room = context - max_tokens - TEMPLATE_MARGIN
    return [n for n in lengths if n <= room], [n for n in lengths if n > room]

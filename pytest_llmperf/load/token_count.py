"""Token counts for answers the server sent no ``usage`` for, taken after the measured window.

Asking the server's tokenizer between a user's requests would put extra calls to the server
under test inside the window, so the clients only keep the text (``RequestRecord.output_text``,
``prompt_text``) and the counting happens here, once the window has ended.  The prompt is
counted inside the model's chat template, as the server saw it.  A count that fails makes that
request a failed one, with the reason; it never escapes to the other requests.  Reasoning
text (``reasoning_text``) is counted the same way; without a tokenizer its count stays unknown
(None), which costs only the answer-token metrics, not the request.

An answer the server aborted (``finish_reason`` ``abort``) is not counted: it fails as
``aborted``, its first cause, not as uncountable.  The counting as a whole is held to a
deadline (a tokenizer behind a slow or dying server would otherwise cost its own timeout per
request): after it, what is left is as without a tokenizer (an answer's count missing fails its
request, with the deadline as the reason).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

from pytest_llmperf.clients.base import TokenCounter, short
from pytest_llmperf.results.errors import ErrorKind
from pytest_llmperf.results.outcome import server_gave_up
from pytest_llmperf.results.records import RequestRecord, TokenSource

__all__ = ["COUNT_DEADLINE_S", "NO_TOKENIZER", "count_missing_tokens"]

# All the counting after one window; one tokenizer call may run past it by its own timeout.
COUNT_DEADLINE_S = 300.0

NO_TOKENIZER = "the server reported no token usage and no tokenizer is available"
# An answer nothing could count is one the client could not read as a measurement.
UNCOUNTABLE = ErrorKind.MALFORMED.value


def count_missing_tokens(
    records: Iterable[RequestRecord], counter: TokenCounter | None, *,
    deadline_s: float = COUNT_DEADLINE_S, clock: Callable[[], float] = time.monotonic,
) -> tuple[RequestRecord, ...]:
    """``records`` with every missing count filled in by ``counter`` and the kept text gone;
    a record not begun within ``deadline_s`` (by ``clock``) fails with the reason."""
    end = clock() + deadline_s
    late = (f"counting tokens with the model's tokenizer passed its deadline of "
            f"{deadline_s:g} s before this request's turn")
    return tuple(_counted(record, counter,
                          late if counter is not None and clock() >= end else None)
                 for record in records)


def _counted(record: RequestRecord, counter: TokenCounter | None,
             late: str | None = None) -> RequestRecord:
    if record.output_text is None and record.prompt_text is None and record.reasoning_text is None:
        return record
    done = dataclasses.replace(record, output_text=None, prompt_text=None, prompt_history=(),
                               reasoning_text=None)
    if record.error is not None:
        return done
    gave_up = server_gave_up(record)
    if gave_up is not None:  # the first cause; that nothing counted it follows from it
        return dataclasses.replace(done, error=gave_up[1], error_kind=gave_up[0].value)
    if counter is None or late is not None:  # past the deadline, as without a tokenizer
        return done if record.output_text is None else dataclasses.replace(
            done, error=late or NO_TOKENIZER, error_kind=UNCOUNTABLE)
    changes: dict[str, object] = {}
    try:
        if record.output_text is not None:
            changes["output_tokens"] = counter.count_text(record.output_text)
            changes["output_token_source"] = TokenSource.TOKENIZER
        if record.prompt_text is not None:
            # Earlier turns only where there are some: a one-turn counter needs no history.
            changes["input_tokens"] = (
                counter.count_prompt(record.prompt_text, record.prompt_history)
                if record.prompt_history else counter.count_prompt(record.prompt_text))
            changes["input_token_source"] = TokenSource.TOKENIZER
        if record.reasoning_text is not None:
            changes["reasoning_tokens"] = counter.count_text(record.reasoning_text)
            changes["reasoning_token_source"] = TokenSource.TOKENIZER
    except Exception as exc:  # any failure costs this one request only
        return dataclasses.replace(
            done, error=f"counting tokens with the model's tokenizer failed: "
                        f"{type(exc).__name__}: {short(str(exc))}", error_kind=UNCOUNTABLE)
    return dataclasses.replace(done, **changes)  # type: ignore[arg-type]

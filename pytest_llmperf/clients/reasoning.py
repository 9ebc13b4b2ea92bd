"""Reasoning ("thinking") apart from the answer, as a stream arrives.

Servers with a reasoning parser send the thinking in its own field (``reasoning_content``,
``reasoning``, Ollama's ``thinking``); without one, DeepSeek-R1-style models write it inline in
the answer as ``<think>...</think>``, or only ``...</think>`` when the chat template already
opened the block.  :class:`ThinkSplitter` cuts inline tags out of text pieces as they come;
:class:`ReasoningTracker` remembers which network reads carried which kind, so that the time
to the answer can be told from TTFT (the first token of any kind).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReasoningSummary", "ReasoningTracker", "ThinkSplitter"]

OPEN, CLOSE = "<think>", "</think>"
_START, _THINK, _ANSWERING, _DONE = range(4)  # splitter states
# What one read carried (bits); _BLANK: only whitespace, before the answer started.
_REASONING, _ANSWER, _BLANK = 1, 2, 4


def _tag_prefix_len(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that a later piece could complete to ``tag``."""
    at = text.find("<", max(len(text) - len(tag) + 1, 0))
    while at != -1:
        if tag.startswith(text[at:]):
            return len(text) - at
        at = text.find("<", at + 1)
    return 0


class ThinkSplitter:
    """Splits answer text into (reasoning, answer) piece by piece; tags are dropped.

    ``<think>`` opens the block only at the start (after whitespace), so an answer that talks
    about the tag is not taken for thinking.  Until a block has closed, a ``</think>`` with no
    opening tag ends a block the template opened: the text before it was reasoning, and
    :attr:`lone_close` says so for that piece, since earlier pieces were given out as answer.
    A possible tag prefix at a piece's end is held until the next piece decides it.
    """

    def __init__(self) -> None:
        self._state, self._held = _START, ""
        self.lone_close = False  # the last piece closed a block that no tag opened

    def feed(self, piece: str) -> tuple[str, str]:
        """The reasoning and the answer text that ``piece`` (with what was held) decides."""
        self.lone_close = False
        if self._state == _DONE:  # the block is over: the rest is answer, nothing held
            return "", piece
        if "<" not in piece and not self._held and self._state != _START:  # most pieces
            return (piece, "") if self._state == _THINK else ("", piece)
        text, self._held = self._held + piece, ""
        reasoning, answer = "", ""
        while text:
            if self._state == _START:
                rest = text.lstrip()
                if len(rest) < len(OPEN) and OPEN.startswith(rest):
                    self._held = text  # whitespace, or maybe the opening tag: undecided
                    break
                if rest.startswith(OPEN):
                    reasoning += text[: len(text) - len(rest)]  # generated before the answer
                    self._state, text = _THINK, rest[len(OPEN):]
                else:
                    self._state = _ANSWERING
                continue
            if self._state == _DONE:
                answer += text
                break
            # _THINK or _ANSWERING: both end at a closing tag; most pieces have no "<" at all
            keep = 0
            if "<" in text:
                at = text.find(CLOSE)
                if at >= 0:
                    reasoning += text[:at]
                    self.lone_close = self._state == _ANSWERING
                    self._state, text = _DONE, text[at + len(CLOSE):]
                    continue
                keep = _tag_prefix_len(text, CLOSE)
            if keep:
                text, self._held = text[:-keep], text[-keep:]
            if self._state == _THINK:
                reasoning += text
            else:
                answer += text
            break
        return reasoning, answer

    def passes(self, piece: str) -> bool:
        """``piece`` is answer as it is, nothing held and no tag in it: :meth:`feed` would
        give it back unchanged and decide nothing."""
        return (self._state == _DONE or (self._state == _ANSWERING and not self._held
                                         and "<" not in piece))

    @property
    def undecided(self) -> bool:
        """True while a lone ``</think>`` may still turn the answer so far into reasoning."""
        return self._state != _DONE

    def flush(self) -> tuple[str, str]:
        """The stream ended: a held tag prefix was text after all."""
        held, self._held = self._held, ""
        return (held, "") if self._state == _THINK else ("", held)


@dataclass(frozen=True)
class ReasoningSummary:
    """A finished stream: reads with reasoning, the answer's first and last reads (None: no
    answer text came) and the reasoning text, tags left out."""

    reasoning_chunks: int
    answer_start_ns: int | None
    answer_end_ns: int | None
    reasoning_text: str


class ReasoningTracker:
    """Per stream: which kind of text each network read carried.

    Feed a read's texts with :meth:`reasoning` (a server's own reasoning field) and
    :meth:`content` (answer text, which may hold inline tags), then :meth:`end_read`.  A read
    carrying both kinds counts for both.  Whitespace before the answer's first other text
    (models write "\\n\\n" after ``</think>``) does not start the answer.
    """

    def __init__(self) -> None:
        self._splitter = ThinkSplitter()
        self._read_ns: list[int] = []
        self._read_kind: list[int] = []
        self._kind, self._answer_started = 0, False  # _kind: of the read being fed
        # Reasoning text, and the answer's while a lone </think> may still make it reasoning.
        self._texts: list[tuple[str, bool]] = []

    def reasoning(self, text: str) -> None:
        """Text of a server's own reasoning field."""
        self._texts.append((text, True))
        self._kind |= _REASONING

    def content(self, text: str) -> None:
        """Answer text as the server sent it, inline tags and all."""
        if self._answer_started and self._splitter.passes(text):  # most of an answer
            if self._splitter.undecided:
                self._texts.append((text, False))
            self._kind |= _ANSWER
            return
        reasoning, answer = self._splitter.feed(text)
        if self._splitter.lone_close:
            self._reclassify()
        self._take(reasoning, answer)

    def end_read(self, now_ns: int) -> None:
        """The texts fed since the last call came in one network read, at ``now_ns``."""
        self._read_ns.append(now_ns)
        self._read_kind.append(self._kind)
        self._kind = 0

    def finish(self) -> ReasoningSummary:
        self._take(*self._splitter.flush())
        if self._read_kind:  # held text came with the last read at the latest
            self._read_kind[-1] |= self._kind
        self._kind = 0
        kinds = self._read_kind
        answers = [ns for ns, kind in zip(self._read_ns, kinds, strict=True) if kind & _ANSWER]
        return ReasoningSummary(
            reasoning_chunks=sum(1 for kind in kinds if kind & _REASONING),
            answer_start_ns=answers[0] if answers else None,
            answer_end_ns=answers[-1] if answers else None,
            reasoning_text="".join(text for text, thought in self._texts if thought),
        )

    def _take(self, reasoning: str, answer: str) -> None:
        if reasoning:
            self.reasoning(reasoning)
        if not answer:
            return
        if self._splitter.undecided:
            self._texts.append((answer, False))
        if self._answer_started or not answer.isspace():
            self._answer_started = True
            self._kind |= _ANSWER
        else:
            self._kind |= _BLANK

    def _reclassify(self) -> None:
        """A lone ``</think>``: every answer so far, in this read too, was reasoning."""
        self._texts = [(text, True) for text, _ in self._texts]
        answer = _ANSWER | _BLANK
        self._read_kind = [_REASONING if kind & answer else kind for kind in self._read_kind]
        if self._kind & answer:
            self._kind = _REASONING
        self._answer_started = False

"""``--llmperf-ab``: the two builds an A/B comparison holds against each other.

``'before: url=http://127.0.0.1:8001/v1; after: url=http://127.0.0.1:8002/v1'`` or
``'before: python=/opt/vllm-0.10/bin/python gpus=0,1; after: python=/opt/vllm-0.11/bin/python
gpus=2,3'``: two sides separated by ``;``, each ``NAME: key=value ...`` with these keys (each
defaulting to the session's own setting):

- ``url``: an OpenAI-compatible server to attach to (the side's ``--llmperf-base-url``);
- ``python``: the interpreter that runs the side's engine (``--llmperf-engine-python``);
- ``gpus``: the side's GPUs (``--llmperf-gpus``: both sides up at once need their own);
- ``backend``, ``model``: another engine or model (a catalogue alias);
- ``args``: the side's extra engine arguments, quoted (``args='--max-num-seqs 128'``).

The first side is the baseline (A), the second the candidate (B).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AB_KEYS", "ABSideSpec", "parse_ab"]

AB_KEYS = ("url", "python", "gpus", "backend", "model", "args")


@dataclass(frozen=True)
class ABSideSpec:
    name: str
    url: str | None = None
    python: Path | None = None
    gpus: tuple[int, ...] | None = None
    backend: str | None = None
    model: str | None = None
    args: tuple[str, ...] = ()


def parse_ab(value: str) -> tuple[ABSideSpec, ABSideSpec]:
    """The two sides of ``value``; ValueError naming the part that is wrong (a URL in it shown
    without its user, password, query or fragment)."""
    from pytest_llmperf.settings.parsers import redact_urls_in

    try:
        return _parse(value)
    except ValueError as exc:
        raise ValueError(redact_urls_in(str(exc))) from None


def _parse(value: str) -> tuple[ABSideSpec, ABSideSpec]:
    parts = [part.strip() for part in value.split(";") if part.strip()]
    if len(parts) != 2:
        raise ValueError(f"expected two sides, 'before: KEY=VALUE ...; after: KEY=VALUE ...', "
                         f"found {len(parts)}")
    sides = tuple(_side(part) for part in parts)
    if sides[0].name == sides[1].name:
        raise ValueError(f"the two sides need two names, both are {sides[0].name!r}")
    if sides[0] == ABSideSpec(sides[0].name) and sides[1] == ABSideSpec(sides[1].name):
        raise ValueError("the two sides are the same build: give each side what differs "
                         f"({', '.join(AB_KEYS)})")
    return sides[0], sides[1]


def _side(text: str) -> ABSideSpec:
    name, colon, rest = text.partition(":")
    name = name.strip()
    if not colon or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"{text!r}: expected NAME: KEY=VALUE ..., NAME a word such as before")
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    found: dict[str, str] = {}
    for word in words:
        key, equals, item = word.partition("=")
        if not equals or key not in AB_KEYS:
            raise ValueError(f"{name}: {word!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(AB_KEYS)}")
        if key in found:
            raise ValueError(f"{name}: {key} given twice")
        found[key] = item
    return ABSideSpec(
        name,
        url=_url(name, found["url"]) if found.get("url") else None,
        python=Path(found["python"]).expanduser() if found.get("python") else None,
        gpus=_gpus(name, found["gpus"]) if "gpus" in found else None,
        backend=found.get("backend") or None,
        model=found.get("model") or None,
        args=tuple(shlex.split(found.get("args", ""))))


def _url(name: str, text: str) -> str:
    from pytest_llmperf.settings.parsers import url

    try:
        return url(text)
    except ValueError as exc:
        raise ValueError(f"{name}: url: {exc}") from None


def _gpus(name: str, text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{name}: gpus={text!r}: expected GPU indexes such as 0,1") from None
    if not ids or any(i < 0 for i in ids):
        raise ValueError(f"{name}: gpus={text!r}: expected GPU indexes such as 0,1")
    return ids

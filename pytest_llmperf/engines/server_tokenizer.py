"""The served model's tokenizer through a server's endpoints (vLLM's ``/tokenize`` and
``/detokenize``; llama.cpp's take the same POSTs, see engines.llamacpp).

Asked only outside measured windows (prompt sources prepare their prompts before a window
starts), so these are plain blocking calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from pytest_llmperf.settings.parsers import redact_url

__all__ = ["VLLMTokenizer", "post_json"]

_TIMEOUT_S = 30.0


class VLLMTokenizer:
    """Token ids of text (no special tokens, no chat template) and text of ids."""

    def __init__(self, root: str, model: str, api_key: str | None = None) -> None:
        self.root = root.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def encode(self, text: str) -> list[int]:
        answer = self._post("/tokenize", {"model": self.model, "prompt": text,
                                          "add_special_tokens": False})
        return [int(token) for token in answer["tokens"]]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._post("/detokenize", {"model": self.model, "tokens": list(ids)})["prompt"])

    def _post(self, path: str, payload: dict[str, object]) -> dict[str, Any]:
        return post_json(self.root + path, payload, self._headers)


def post_json(url: str, payload: dict[str, object], headers: dict[str, str]) -> dict[str, Any]:
    """POST ``payload`` as JSON and the JSON object answered.

    Raises a ``requests.RequestException`` on a failed exchange or an answer that is not 2xx,
    with a message of our own: the method, the URL without credentials or query, and what
    went wrong.  Token counting stores that message in records, so it never carries the
    server's reason phrase or body (a server may echo the Authorization header there), nor
    requests' own text (the whole URL)."""
    shown = redact_url(url)
    try:
        # No redirects: requests would follow one as a GET, and drop the key on another host.
        response = requests.post(url, json=payload, headers=headers, timeout=_TIMEOUT_S,
                                 allow_redirects=False)
    except requests.RequestException as exc:
        raise type(exc)(f"POST {shown} failed: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise requests.HTTPError(f"POST {shown} answered HTTP {response.status_code}")
    try:
        answer = response.json()
    except ValueError:
        raise ValueError(f"POST {shown} answered no JSON") from None
    if not isinstance(answer, dict):
        raise ValueError(f"POST {shown} answered JSON that is not an object")
    return answer

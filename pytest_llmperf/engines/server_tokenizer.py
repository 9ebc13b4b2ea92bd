"""The served model's tokenizer through a server's endpoints (vLLM's ``/tokenize`` and
``/detokenize``; llama.cpp's take the same POSTs, see engines.llamacpp).

Asked only outside measured windows (prompt sources prepare their prompts before a window
starts), so these are plain blocking calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

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
    """POST ``payload`` as JSON and the JSON object answered; raises on an HTTP error."""
    response = requests.post(url, json=payload, headers=headers, timeout=_TIMEOUT_S)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer

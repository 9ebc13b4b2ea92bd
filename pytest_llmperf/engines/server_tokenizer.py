"""The served model's tokenizer through vLLM's ``/tokenize`` and ``/detokenize`` endpoints.

Asked only outside measured windows (prompt sources prepare their prompts before a window
starts), so these are plain blocking calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

__all__ = ["VLLMTokenizer"]

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
        response = requests.post(self.root + path, json=payload, headers=self._headers,
                                 timeout=_TIMEOUT_S)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

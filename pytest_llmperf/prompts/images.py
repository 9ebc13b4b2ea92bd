"""Images in chat: each prompt of another source carries one generated image, of sizes taken
in turn (``--llmperf-images 512x512,1024x1024``), as an OpenAI ``image_url`` part with a
base64 ``data:`` URL.

An image is a PNG of 16 x 16 pixel tiles of random colours: its token count depends on its
size alone (a vision encoder cuts any picture into the same patches), and no two images are
alike (each has its own colours, from the seed and the run's salt), so a server's image cache
cannot flatter a second request or a second run.  Tiles keep the PNG small (a 1024 x 1024
image is about 20 KB), so the upload is not what a test measures.  Images are made before the
window (``prepare``), not while it runs.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import secrets
import struct
import zlib
from collections.abc import Sequence

from pytest_llmperf.prompts.builtin import Prompt, PromptSource
from pytest_llmperf.results.prompt_origin import PromptOrigin

__all__ = ["ImagePrompts", "png_bytes", "png_data_url"]

TILE = 16  # pixels a side


def png_bytes(width: int, height: int, rng: random.Random) -> bytes:
    """An RGB PNG of ``width`` x ``height`` pixels in 16-pixel tiles of random colours."""
    columns = -(-width // TILE)
    rows = []
    for _ in range(-(-height // TILE)):
        colours = [bytes(rng.randrange(256) for _ in range(3)) for _ in range(columns)]
        line = b"\x00" + b"".join(colour * TILE for colour in colours)[:3 * width]
        rows.append(line * TILE)
    raw = b"".join(rows)[:height * (1 + 3 * width)]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def png_data_url(width: int, height: int, rng: random.Random) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height, rng)).decode()


class ImagePrompts:
    """``source``'s prompts, each with one image of ``sizes`` in turn."""

    def __init__(self, source: PromptSource, sizes: Sequence[tuple[int, int]], *,
                 seed: int = 0, salt: str | None = None) -> None:
        if not sizes:
            raise ValueError("images need at least one size")
        self.source = source
        self.sizes = tuple(sizes)
        self.about_caching = source.about_caching
        self._rng = random.Random(f"{seed}:{salt or secrets.token_hex(8)}")
        self._made: list[tuple[str, str]] = []
        self._sent = 0

    def prepare(self, count: int) -> None:
        self.source.prepare(count)
        while len(self._made) < self._sent + count:
            self._made.append(self._make(len(self._made)))

    def next_prompt(self) -> Prompt:
        prompt = self.source.next_prompt()
        index = self._sent
        self._sent += 1
        label, url = self._made[index] if index < len(self._made) else self._make(index)
        return dataclasses.replace(prompt, images=(url,), image_size=label)

    def _make(self, index: int) -> tuple[str, str]:
        width, height = self.sizes[index % len(self.sizes)]
        return f"{width}x{height}", png_data_url(width, height, self._rng)

    def describe(self) -> PromptOrigin:
        origin = self.source.describe()
        sizes = ",".join(f"{w}x{h}" for w, h in self.sizes)
        return dataclasses.replace(origin, details={**dict(origin.details), "images": sizes})

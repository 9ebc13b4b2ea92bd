"""A measuring instrument: an OpenAI-compatible streaming server with known, injected delays.

    python sse_stub.py PORT [--first-ms MS] [--token-ms MS] [--jitter SD]
                            [--per-stream-ms MS] [--slots N]

Every chat completion streams exactly ``max_tokens`` tokens: the first after ``--first-ms``,
each next one ``--token-ms`` later (times a lognormal factor with sdlog ``--jitter``, seeded
per request, so runs differ the way a real server's do), then a usage chunk.
``--per-stream-ms`` adds that much to every token gap for each other stream in flight, so the
time per token grows linearly with the load (a known capacity boundary: with token gap
``t + s * (n - 1)`` at ``n`` streams, ``tpot < L`` holds up to ``n = (L - t) / s + 1``).
``--slots N`` serves at most N streams at once; the others wait, as in an engine's queue.
It stands in for no engine: it gives ground truth (a known slowdown, a known boundary) that
a real server cannot.  Ready once ``GET /v1/models`` answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random

from aiohttp import web


def _chunk(payload: dict[str, object]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def make_app(first_ms: float, token_ms: float, jitter: float, per_stream_ms: float = 0.0,
             slots: int | None = None) -> web.Application:
    counter = iter(range(1, 10**9))
    streaming = [0]
    gate = asyncio.Semaphore(slots) if slots else None

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tokens = int(body.get("max_tokens") or 16)
        rng = random.Random(next(counter))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if gate:
            await gate.acquire()
        streaming[0] += 1
        try:
            await asyncio.sleep(first_ms / 1000)
            for index in range(tokens):
                if index:
                    gap = token_ms + per_stream_ms * (streaming[0] - 1)
                    await asyncio.sleep(gap * rng.lognormvariate(0.0, jitter) / 1000)
                await response.write(_chunk({"choices": [{"index": 0, "delta": {
                    "content": f" t{index}"}, "finish_reason": None}]}))
        finally:
            streaming[0] -= 1
            if gate:
                gate.release()
        await response.write(_chunk({"choices": [{"index": 0, "delta": {},
                                                  "finish_reason": "length"}]}))
        await response.write(_chunk({"choices": [], "usage": {
            "prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--first-ms", type=float, default=20.0)
    parser.add_argument("--token-ms", type=float, default=10.0)
    parser.add_argument("--jitter", type=float, default=0.05)
    parser.add_argument("--per-stream-ms", type=float, default=0.0)
    parser.add_argument("--slots", type=int, default=None)
    args = parser.parse_args()
    app = make_app(args.first_ms, args.token_ms, args.jitter, args.per_stream_ms, args.slots)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None,
                handle_signals=True)


if __name__ == "__main__":
    main()

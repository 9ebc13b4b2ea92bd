"""A measuring instrument: an OpenAI-compatible streaming server with known, injected delays.

    python sse_stub.py PORT [--first-ms MS] [--token-ms MS] [--jitter SD]

Every chat completion streams exactly ``max_tokens`` tokens: the first after ``--first-ms``,
each next one ``--token-ms`` later (times a lognormal factor with sdlog ``--jitter``, seeded
per request, so runs differ the way a real server's do), then a usage chunk.  It stands in for
no engine: it gives the ground truth (a known slowdown) that the regression gate must see.
Ready once ``GET /v1/models`` answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random

from aiohttp import web


def _chunk(payload: dict[str, object]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def make_app(first_ms: float, token_ms: float, jitter: float) -> web.Application:
    counter = iter(range(1, 10**9))

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tokens = int(body.get("max_tokens") or 16)
        rng = random.Random(next(counter))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(first_ms / 1000)
        for index in range(tokens):
            if index:
                await asyncio.sleep(token_ms * rng.lognormvariate(0.0, jitter) / 1000)
            await response.write(_chunk({"choices": [{"index": 0, "delta": {
                "content": f" t{index}"}, "finish_reason": None}]}))
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
    args = parser.parse_args()
    app = make_app(args.first_ms, args.token_ms, args.jitter)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None,
                handle_signals=True)


if __name__ == "__main__":
    main()

"""A measuring instrument: an OpenAI-compatible streaming server with known, injected delays.

    python sse_stub.py PORT [--first-ms MS] [--token-ms MS] [--jitter SD]
                            [--per-stream-ms MS] [--slots N]
                            [--reasoning N [--reasoning-style field|think]]
                            [--drift-ms-per-s MS [--drift-from UNIX_TIME]]

Every chat completion streams exactly ``max_tokens`` tokens: the first after ``--first-ms``,
each next one ``--token-ms`` later (times a lognormal factor with sdlog ``--jitter``, seeded
per request, so runs differ the way a real server's do), then a usage chunk.
``--per-stream-ms`` adds that much to every token gap for each other stream in flight, so the
time per token grows linearly with the load (a known capacity boundary: with token gap
``t + s * (n - 1)`` at ``n`` streams, ``tpot < L`` holds up to ``n = (L - t) / s + 1``).
``--slots N`` serves at most N streams at once; the others wait, as in an engine's queue.
``--drift-ms-per-s MS`` makes the machine drift: every token gap grows by MS for each second
since ``--drift-from`` (a Unix time; default: when the stub started), so two stubs given the
same time drift alike, as two builds on one host do.
``--reasoning N`` makes the first N tokens of each answer reasoning, sent as vLLM's
``delta.reasoning_content`` (style ``field``, with ``reasoning_tokens`` in the usage) or inline
in ``<think>...</think>`` (style ``think``): the answer's first token is then known to come
after the first token by N token gaps.
``--image-token-ms MS`` delays the first token by MS for each image token a request carries
(PNG images in ``image_url`` parts, one token per 28 x 28 pixels, also counted in the usage's
prompt tokens): a known TTFT per image size.
``/v1/rerank`` scores each document by the query words it holds, answering after
``--first-ms`` plus ``--token-ms`` per document.
``/tokenize`` and ``/detokenize`` (vLLM's shape) count one token per word, so the prompt
sources that make exact lengths (a replayed trace's) run against it too.
It stands in for no engine: it gives ground truth (a known slowdown, a known boundary) that
a real server cannot.  Ready once ``GET /v1/models`` answers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import struct
import time

from aiohttp import web


def _chunk(payload: dict[str, object]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _delta(index: int, reasoning: int, style: str) -> dict[str, str]:
    """Token ``index``'s delta: reasoning for the first ``reasoning`` tokens, then answer."""
    if index >= reasoning:
        text = f" t{index}"
        return {"content": ("</think>" + text) if style == "think" and index == reasoning
                and reasoning else text}
    if style == "think":
        return {"content": ("<think>" if index == 0 else "") + f" r{index}"}
    return {"reasoning_content": f" r{index}"}


def image_tokens(messages: object) -> int:
    """Tokens of the PNG images in ``messages``: one per 28 x 28 pixel patch (a vision
    encoder's, after merging), read from each PNG's header."""
    tokens = 0
    for message in messages if isinstance(messages, list) else ():
        parts = message.get("content") if isinstance(message, dict) else None
        for part in parts if isinstance(parts, list) else ():
            url = part.get("image_url", {}).get("url", "") if isinstance(part, dict) else ""
            if url.startswith("data:image/png;base64,"):
                head = base64.b64decode(url.split(",", 1)[1][:32])
                width, height = struct.unpack(">II", head[16:24])
                tokens += -(-width // 28) * -(-height // 28)
    return tokens


def make_app(first_ms: float, token_ms: float, jitter: float, per_stream_ms: float = 0.0,
             slots: int | None = None, reasoning: int = 0,
             reasoning_style: str = "field", drift_ms_per_s: float = 0.0,
             drift_from: float | None = None, image_token_ms: float = 0.0) -> web.Application:
    counter = iter(range(1, 10**9))
    streaming = [0]
    gate = asyncio.Semaphore(slots) if slots else None
    since = time.time() if drift_from is None else drift_from

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tokens = int(body.get("max_tokens") or 16)
        seen = image_tokens(body.get("messages"))
        rng = random.Random(next(counter))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if gate:
            await gate.acquire()
        streaming[0] += 1
        try:
            # Each token is due at an absolute time (the last one's due time plus its gap), so
            # the event loop's lateness on a busy machine does not add up over an answer: the
            # delays delivered are the ones injected.
            loop = asyncio.get_running_loop()
            due = loop.time() + (first_ms + image_token_ms * seen) / 1000
            await asyncio.sleep(max(0.0, due - loop.time()))
            for index in range(tokens):
                if index:
                    gap = (token_ms + per_stream_ms * (streaming[0] - 1)
                           + drift_ms_per_s * max(0.0, time.time() - since))
                    due += gap * rng.lognormvariate(0.0, jitter) / 1000
                    await asyncio.sleep(max(0.0, due - loop.time()))
                await response.write(_chunk({"choices": [{"index": 0, "delta": _delta(
                    index, reasoning, reasoning_style), "finish_reason": None}]}))
        finally:
            streaming[0] -= 1
            if gate:
                gate.release()
        await response.write(_chunk({"choices": [{"index": 0, "delta": {},
                                                  "finish_reason": "length"}]}))
        usage: dict[str, object] = {"prompt_tokens": 12 + seen, "completion_tokens": tokens,
                                    "total_tokens": 12 + seen + tokens}
        if reasoning and reasoning_style == "field":
            usage["completion_tokens_details"] = {"reasoning_tokens": min(reasoning, tokens)}
        await response.write(_chunk({"choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def rerank(request: web.Request) -> web.Response:
        # Scores each document by the share of the query's words it holds, after --first-ms
        # plus --token-ms per document: a known latency for the rerank client's figures.
        body = await request.json()
        query = set(str(body["query"]).split())
        documents = [str(d) for d in body["documents"]]
        await asyncio.sleep((first_ms + token_ms * len(documents)) / 1000)
        scores = [len(query & set(d.split())) / max(1, len(query)) for d in documents]
        order = sorted(range(len(documents)), key=lambda i: -scores[i])
        tokens = len(str(body["query"]).split()) * len(documents) + sum(
            len(d.split()) for d in documents)
        return web.json_response({
            "id": f"rerank-{next(counter)}", "model": body.get("model", "stub"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "results": [{"index": i, "relevance_score": scores[i]} for i in order]})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    vocabulary: dict[str, int] = {}
    words: list[str] = []

    async def tokenize(request: web.Request) -> web.Response:
        ids = []
        for word in str((await request.json())["prompt"]).split():
            if word not in vocabulary:
                vocabulary[word] = len(words)
                words.append(word)
            ids.append(vocabulary[word])
        return web.json_response({"tokens": ids, "count": len(ids)})

    async def detokenize(request: web.Request) -> web.Response:
        ids = (await request.json())["tokens"]
        return web.json_response({"prompt": " ".join(words[int(i)] for i in ids)})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/rerank", rerank)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--first-ms", type=float, default=20.0)
    parser.add_argument("--token-ms", type=float, default=10.0)
    parser.add_argument("--jitter", type=float, default=0.05)
    parser.add_argument("--per-stream-ms", type=float, default=0.0)
    parser.add_argument("--slots", type=int, default=None)
    parser.add_argument("--reasoning", type=int, default=0)
    parser.add_argument("--reasoning-style", choices=("field", "think"), default="field")
    parser.add_argument("--drift-ms-per-s", type=float, default=0.0)
    parser.add_argument("--drift-from", type=float, default=None)
    parser.add_argument("--image-token-ms", type=float, default=0.0)
    args = parser.parse_args()
    app = make_app(args.first_ms, args.token_ms, args.jitter, args.per_stream_ms, args.slots,
                   args.reasoning, args.reasoning_style, args.drift_ms_per_s, args.drift_from,
                   args.image_token_ms)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None,
                handle_signals=True)


if __name__ == "__main__":
    main()

"""A scripted server for the secret scans on failure paths: it fails the way it is told to, and
echoes the request's Authorization header wherever a server's text could travel on.

    python secrets_stub.py PORT MODE

MODE:
- ``deny``: every request is answered 401;
- ``deny-load``: ready (``/health``, ``/v1/models``), every completion answered 401;
- ``deny-load-echo``: the same, and the 401's body quotes the Authorization header too;
- ``count-fail``: ready, completions stream without usage, and ``/tokenize`` answers 401, so
  counting the answers' tokens fails for every request;
- ``die``: ready; the second completion (the first measured one after one warm-up request)
  kills the server mid-answer, as an engine that crashes.

Every error answer carries the Authorization header it got as its reason phrase, and (with
``-echo``, or where no client of ours reads the body) in its body: the most a hostile or
careless server could do.  Speaks the OpenAI API at ``/v1`` and
llama.cpp's ``/health``, ``/apply-template`` and ``/tokenize`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os

from aiohttp import web

MODELS = {"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "stub"}]}


def make_app(mode: str) -> web.Application:
    completions = [0]

    def denied(request: web.Request) -> web.Response:
        echoed = request.headers.get("Authorization", "no Authorization header")
        quoted = echoed if mode == "deny-load-echo" or not request.path.endswith(
            "/completions") else "(not quoted)"
        return web.Response(status=401, reason=f"Unauthorized: {echoed}",
                            text=json.dumps({"error": {"message": f"bad key {quoted}"}}))

    async def ready(request: web.Request) -> web.Response:
        return denied(request) if mode == "deny" else web.json_response(MODELS)

    async def tokenize(request: web.Request) -> web.Response:
        if mode == "count-fail":
            return denied(request)
        return web.Response(status=404, text="no tokenizer here")

    async def apply_template(request: web.Request) -> web.Response:
        body = await request.json()
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        return web.json_response({"prompt": text})

    async def chat(request: web.Request) -> web.StreamResponse:
        if mode.startswith("deny"):
            return denied(request)
        body = await request.json()
        completions[0] += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(int(body.get("max_tokens") or 8)):
            if mode == "die" and completions[0] == 2 and index == 2:
                os._exit(1)  # an engine that crashes mid-answer: no close, no goodbye
            chunk = {"choices": [{"index": 0, "delta": {"content": f" t{index}"},
                                  "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
        await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/health", ready)
    app.router.add_get("/v1/models", ready)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/apply-template", apply_template)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("mode",
                        choices=["deny", "deny-load", "deny-load-echo", "count-fail", "die"])
    args = parser.parse_args()
    web.run_app(make_app(args.mode), host="127.0.0.1", port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()

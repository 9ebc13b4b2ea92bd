"""Launcher: ``python -m pytest_llmperf.backends.xllamacpp_server --model M.gguf --port N``.

Runs one xllamacpp (llama.cpp) HTTP server in this process until SIGTERM, or until the
process that launched it is gone, so that a killed test session leaves no server behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="path of a .gguf file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=8, help="slots (concurrent requests)")
    parser.add_argument("--ctx-per-slot", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process is gone")
    args = parser.parse_args(argv)

    import xllamacpp  # heavy native module: only in the server process

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.port = args.port
    params.hostnames = ["127.0.0.1"]
    params.n_parallel = args.parallel
    params.n_ctx = args.parallel * args.ctx_per_slot
    params.cont_batching = True
    params.endpoint_metrics = True
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    print(f"pytest-llmperf: serving {args.model} on 127.0.0.1:{args.port}", flush=True)
    while not stop.wait(0.5):
        # Re-parented (to init or a subreaper) means the launching process has died.
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            print("pytest-llmperf: launching process is gone; exiting", flush=True)
            break
    del server
    # The native server threads do not always end on their own; leave without waiting.
    os._exit(0)


if __name__ == "__main__":
    main()

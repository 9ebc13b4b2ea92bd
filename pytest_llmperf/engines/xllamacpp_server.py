"""Launcher: ``python -m pytest_llmperf.engines.xllamacpp_server -m M.gguf --port N ...``.

Runs one xllamacpp (llama.cpp) HTTP server in this process until SIGTERM, or until the
process that launched it is gone (``--parent-pid``), so that a killed test session leaves no
server behind.  It takes ``llama-server``'s own flags for what the suite sets, so the embedded
engine and an external ``llama-server`` binary (``--llamacpp-bin``) are launched with the same
command line; only the program differs.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading


def build_parser() -> argparse.ArgumentParser:
    """llama-server's flags (the subset the suite uses), plus our ``--parent-pid``."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_llmperf.engines.xllamacpp_server",
        description="Serve one GGUF model with xllamacpp; flags as llama-server's.",
        allow_abbrev=False,
    )
    parser.add_argument("-m", "--model", help="path of a .gguf file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-np", "--parallel", type=int, default=1,
                        help="slots (requests served at once)")
    parser.add_argument("-c", "--ctx-size", type=int, default=0,
                        help="total context, shared by the slots (0: the model's)")
    parser.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", dest="n_gpu_layers", type=int,
                        default=None, help="layers offloaded to the GPU")
    parser.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--metrics", action="store_true", help="serve Prometheus /metrics")
    parser.add_argument("-cb", "--cont-batching", dest="cont_batching", action="store_true",
                        default=True, help="continuous batching (the default)")
    parser.add_argument("-nocb", "--no-cont-batching", dest="cont_batching",
                        action="store_false")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process is gone (not a llama-server flag)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"version: {_version()} (pytest-llmperf xllamacpp launcher)", flush=True)
        return
    if not args.model:
        parser.error("the following arguments are required: -m/--model")

    import xllamacpp  # heavy native module: only in the server process

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.port = args.port
    params.hostnames = [args.host]
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx_size
    if args.n_gpu_layers is not None:
        params.n_gpu_layers = args.n_gpu_layers
    params.cont_batching = args.cont_batching
    params.endpoint_metrics = args.metrics
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    print(f"pytest-llmperf: serving {args.model} on {args.host}:{args.port}", flush=True)
    while not stop.wait(0.5):
        # Re-parented (to init or a subreaper) means the launching process has died.
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            print("pytest-llmperf: launching process is gone; exiting", flush=True)
            break
    del server
    # The native server threads do not always end on their own; leave without waiting.
    os._exit(0)


def _version() -> str:
    import importlib.metadata

    try:
        return f"xllamacpp {importlib.metadata.version('xllamacpp')}"
    except importlib.metadata.PackageNotFoundError:
        return "xllamacpp (version unknown)"


if __name__ == "__main__":
    main()

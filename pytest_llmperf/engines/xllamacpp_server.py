"""Launcher: ``python -m pytest_llmperf.engines.xllamacpp_server -m M.gguf --port N ...``.

Runs one xllamacpp (llama.cpp) HTTP server in this process until SIGTERM or SIGHUP, or until
the process named by ``--parent-pid`` is gone, so that a killed test session leaves no server
behind even without the guard every launched engine runs under (engines/guard.py, which is
this process's parent: the pid watched is the test process's, not the parent's).

It takes ``llama-server``'s own flags for what the suite sets, so the embedded
engine and an external ``llama-server`` binary (``--llamacpp-bin``) are launched with the same
command line; only the program differs.
"""

from __future__ import annotations

import argparse
import os
import select
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
    parser.add_argument("--embeddings", action="store_true",
                        help="serve /v1/embeddings too")
    parser.add_argument("--pooling", choices=("none", "mean", "cls", "last", "rank"),
                        default=None, help="how a sequence's embeddings are pooled")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when the process with this pid is gone (not a "
                             "llama-server flag)")
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
    params.embedding = args.embeddings
    if args.pooling is not None:
        params.pooling_type = getattr(xllamacpp.llama_pooling_type,
                                      f"LLAMA_POOLING_TYPE_{args.pooling.upper()}")
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads

    watch = ParentWatch(args.parent_pid) if args.parent_pid is not None else None
    # Loading the model is native code: a Python handler would run only once it returned (a
    # stop asked for during the load waited the whole load, or the guard's grace period).
    # Until the server is made, the signals keep their default action: nothing to clean up.
    server = xllamacpp.Server(params)  # noqa: F841 - serves while referenced, to the end
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    print(f"pytest-llmperf: serving {args.model} on {args.host}:{args.port}", flush=True)
    while not stop.wait(0.5):
        if watch is not None and watch.gone():
            print("pytest-llmperf: launching process is gone; exiting", flush=True)
            break
    # The native server threads do not always end on their own, and the server's destructor
    # waits for the answers still streaming (a stop asked for mid-window, its client's
    # connections still open, waited the guard's whole grace period): leave without running
    # it; the process's end releases the model, the port and the threads.
    os._exit(0)


class ParentWatch:
    """Whether the process ``pid`` has gone: a pidfd says so (the pid cannot be mistaken for a
    new process that was given it); without one, whether the pid still exists."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        self.lost = False
        try:
            self.fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.lost = True
        except (OSError, AttributeError):
            pass  # no pidfd here: poll the pid

    def gone(self) -> bool:
        if self.lost:
            return True
        if self.fd is not None:
            self.lost = bool(select.select([self.fd], [], [], 0)[0])
        else:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.lost = True
            except PermissionError:
                pass
        return self.lost


def _version() -> str:
    import importlib.metadata

    try:
        return f"xllamacpp {importlib.metadata.version('xllamacpp')}"
    except importlib.metadata.PackageNotFoundError:
        return "xllamacpp (version unknown)"


if __name__ == "__main__":
    main()

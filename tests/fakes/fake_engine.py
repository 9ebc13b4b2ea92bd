"""A fake inference engine for the server lifecycle tests (standard library only).

    python fake_engine.py PORT [--say LINE]... [--exit CODE] [--status N] [--listen-after S]
        [--no-listen] [--ignore-sigterm] [--fork-worker PIDFILE] [--detach-helper PIDFILE]
        [--die-after S CODE] [--crash-line LINE] [--log-every S]

It prints the ``--say`` lines, exits with ``--exit`` if given, forks a worker into its own
process group if asked (the worker sleeps forever and shares the SIGTERM disposition), starts a
detached helper if asked (as Ray's daemons are: a session of its own, forked twice so that its
parent is gone, ignoring SIGHUP; it sleeps forever), then serves ``GET /health`` on
127.0.0.1:PORT with ``--status`` (after ``--listen-after`` seconds, or never with
``--no-listen``), and with ``--die-after`` exits that long after it is ready, printing
``--crash-line`` and leaving its worker and helper behind, as an engine that crashes while
serving does.  Each PIDFILE gets the pid once the process runs.
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import sys
import threading
import time


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def say(line: str) -> None:
    print(line, flush=True)


def write_pid(path: str, pid: int) -> None:
    with open(path + ".tmp", "w") as out:
        out.write(str(pid))
    os.replace(path + ".tmp", path)  # seen whole or not at all


def detach_helper(pid_file: str) -> None:
    """A daemon that escapes the engine's process group and session (double fork, setsid)."""
    middle = os.fork()
    if middle == 0:
        os.setsid()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if os.fork() == 0:
            write_pid(pid_file, os.getpid())
            while True:
                time.sleep(60)
        os._exit(0)
    os.waitpid(middle, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--say", action="append", default=[])
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--listen-after", type=float, default=0.0)
    parser.add_argument("--no-listen", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--fork-worker", default=None, metavar="PIDFILE")
    parser.add_argument("--detach-helper", default=None, metavar="PIDFILE")
    parser.add_argument("--die-after", nargs=2, type=float, default=None, metavar=("S", "CODE"))
    parser.add_argument("--crash-line", default="main: crashing")
    parser.add_argument("--log-every", type=float, default=None)
    args = parser.parse_args()

    for line in args.say:
        say(line)
    if args.exit is not None:
        sys.exit(args.exit)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.fork_worker:
        worker = os.fork()
        if worker == 0:
            while True:
                time.sleep(60)
        write_pid(args.fork_worker, worker)
    if args.detach_helper:
        detach_helper(args.detach_helper)
    if args.log_every:
        def chatter() -> None:
            shard = 0
            while True:
                shard += 1
                say(f"Loading weights shard {shard}")
                time.sleep(args.log_every)

        threading.Thread(target=chatter, daemon=True).start()
    if args.no_listen:
        while True:
            time.sleep(60)
    time.sleep(args.listen_after)
    Health.status = args.status
    server = http.server.HTTPServer(("127.0.0.1", args.port), Health)
    say(f"main: server is listening on http://127.0.0.1:{args.port}")
    if args.die_after:
        delay, code = args.die_after
        threading.Thread(target=server.serve_forever, daemon=True).start()
        time.sleep(delay)
        say(args.crash_line)
        os._exit(int(code))
    server.serve_forever()


if __name__ == "__main__":
    main()

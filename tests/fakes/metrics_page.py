"""A Prometheus text page served over HTTP on the loopback address, for the scrapers' tests:
``page(read)`` gives the body of the ``read``-th request (0 first), so a test knows how the
values moved between its reads."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator

__all__ = ["serving_page"]


@contextlib.contextmanager
def serving_page(page: Callable[[int], str], content_type: str = "text/plain; version=0.0.4"
                 ) -> Iterator[tuple[str, list[int]]]:
    """The page's URL (``/metrics``; any other path answers 404) and the reads it answered."""
    reads: list[int] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with lock:
                read = len(reads)
                reads.append(read)
            body = page(read).encode()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", reads
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

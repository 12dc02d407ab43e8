"""A small HTTP sink on loopback that records the CloudEvents POSTed to it (a K_SINK for tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    """One POST: lower-cased headers and the body."""

    headers: dict[str, str]
    body: bytes


class EventSink:
    """Answers every POST with ``status`` and keeps what it got."""

    def __init__(self, status: int = 202) -> None:
        self.received: list[Received] = []
        self.status = status
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """The first ``count`` POSTs; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.received) >= count, f"the sink got {len(self.received)} events, expected {count}"
        return self.received[:count]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

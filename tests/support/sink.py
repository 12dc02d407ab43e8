"""A small HTTP sink on loopback that records the CloudEvents POSTed to it (a K_SINK for tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    """One POST: lower-cased headers, the body, and the status the sink answered."""

    headers: dict[str, str]
    body: bytes
    status: int = 202


class EventSink:
    """Answers every POST with ``status`` (which a test may change: a sink down, then up) and keeps what it got.

    ``max_body``: bodies larger than this are answered 503, as a KafkaSink answers an event its
    producer cannot write (its records are limited to 1 MiB by default).
    """

    def __init__(self, status: int = 202, max_body: int | None = None) -> None:
        self.received: list[Received] = []
        self.status = status
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 503 if max_body is not None and len(body) > max_body else sink.status
                sink.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
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

    @property
    def accepted(self) -> list[Received]:
        """The POSTs the sink took (answered 2xx)."""
        return [event for event in self.received if 200 <= event.status < 300]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

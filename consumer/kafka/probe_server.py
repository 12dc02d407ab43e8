"""The Kafka consumer's probes: liveness from the loop's heartbeat, readiness, metrics.

Liveness follows a heartbeat: the worker calls ``beat()`` on every turn of its loop
(at least once a second, also while a job runs), so ``/health`` turns 503 when the loop
is stuck, and Kubernetes restarts the pod. Readiness is ``consumer.readiness``'s rule: the
engine and the object store.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer import metrics
from consumer.engine import Engine
from consumer.readiness import readiness

if TYPE_CHECKING:
    from consumer.storage import StoreHealth


class Heartbeat:
    """The time of the worker loop's last turn."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def beat(self) -> None:
        """Record a turn of the loop."""
        self._last = time.monotonic()

    def age(self) -> float:
        """Seconds since the last turn."""
        return time.monotonic() - self._last


class ProbeServer:
    """``/health``, ``/ready`` and ``/metrics`` on ``host:port``, served from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        heartbeat: Heartbeat,
        engine: Engine,
        stale_after: float,
        store: StoreHealth | None = None,
    ) -> None:
        handler = self._handler_class(heartbeat, engine, stale_after, store)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]

    def start(self) -> None:
        """Serve in a daemon thread."""
        threading.Thread(target=self._server.serve_forever, name="probes", daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _handler_class(heartbeat: Heartbeat, engine: Engine, stale_after: float, store: StoreHealth | None) -> type:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    age = heartbeat.age()
                    ok = age < stale_after
                    self._json(
                        200 if ok else 503, {"status": "healthy" if ok else "stuck", "loop_age_seconds": round(age, 1)}
                    )
                elif self.path == "/ready":
                    self._json(*readiness(engine, store))
                elif self.path == "/metrics":
                    metrics.MODEL_READY.set(1 if engine.ready else 0)
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                else:
                    self._json(404, {"error": {"code": "not_found", "message": self.path}})

            def _json(self, status: int, body: dict[str, object]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes are not worth a log line
                pass

        return Handler

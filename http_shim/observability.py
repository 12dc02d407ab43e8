"""Request ids, access log lines, HTTP metrics and body deadlines for every request."""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

from http_shim.slow_clients import bound_body, finish_body
from http_shim.state import state

log = logging.getLogger(__name__)

REQUESTS = Counter("http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
_QUIET = {"probes.health", "probes.ready", "probes.metrics"}


def register(app: Flask) -> None:
    """Install the request hooks on ``app``."""

    with app.app_context():
        settings = state().settings

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-ID", "")[:128] or uuid.uuid4().hex
        bound_body(request.environ, settings.http.body_read_timeout, settings.audio.max_bytes)

    @app.teardown_request
    def _drop_body_deadline(_: BaseException | None) -> None:
        finish_body(request.environ)

    @app.after_request
    def _finish(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        DURATION.labels(endpoint).observe(elapsed)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if endpoint not in _QUIET:
            log.info(
                "request",
                extra={
                    "request_id": g.get("request_id"),
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "seconds": round(elapsed, 3),
                },
            )
        return response

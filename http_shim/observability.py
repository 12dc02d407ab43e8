"""Request ids, access log lines, HTTP metrics and a read timeout for every request."""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

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

    body_read_timeout = app.extensions["diarization"]["settings"].http.body_read_timeout

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-ID", "")[:128] or uuid.uuid4().hex
        # gunicorn reads request bodies from a blocking socket without a timeout: a client
        # trickling its upload (slow loris) would hold a thread for ever. Bound each read;
        # a stalled body then raises TimeoutError, answered 408 (http_shim.errors).
        connection = request.environ.get("gunicorn.socket")
        if connection is not None:
            connection.settimeout(body_read_timeout)

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

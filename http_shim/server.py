"""``diarization-shim``: serve the HTTP shim with gunicorn.

One worker process holds the model (loading it once per GPU); its threads serve requests
while the engine runs one inference at a time. The model loads in the background after
the worker starts, so ``/health`` answers at once and ``/ready`` turns green when warm.
Slow clients are bounded: request headers by ``HeaderDeadlineWorker``, bodies by
``http_shim.slow_clients``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from consumer.config import Settings, SettingsError, from_environment
from consumer.logs import configure_logging
from http_shim.auth import check_doors
from http_shim.sender_auth import SenderAuth
from http_shim.slow_clients import Watchdog, shut_down_reading

log = logging.getLogger(__name__)


class HeaderDeadlineWorker(ThreadWorker):
    """gunicorn's threaded worker with a deadline for reading each request's headers.

    gthread waits five seconds for a connection's first byte, then reads the headers from
    a blocking socket without a timeout: a client sending them a byte at a time would keep
    the thread for ever. A watchdog shuts down connections whose headers are late; the
    blocked read then ends and gunicorn closes the connection.
    """

    header_timeout = 10.0  # set from Settings before the worker is forked

    def init_process(self) -> None:
        self._headers = Watchdog()
        super().init_process()  # runs the worker loop; returns at shutdown

    def handle(self, conn: Any) -> Any:
        self._headers.arm(conn, self.header_timeout, lambda: self._late(conn))
        try:
            return super().handle(conn)
        finally:
            self._headers.disarm(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        self._headers.disarm(conn)  # the headers are in
        return super().handle_request(req, conn)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: gunicorn drains the requests; the receiver stops retrying its accepted jobs."""
        super().handle_exit(sig, frame)
        self._shut_down()

    def handle_quit(self, sig: int, frame: Any) -> None:
        self._shut_down()
        super().handle_quit(sig, frame)

    def _shut_down(self) -> None:
        from http_shim import shut_down

        if getattr(self, "wsgi", None) is not None:
            shut_down(self.wsgi)

    @staticmethod
    def _late(conn: Any) -> None:
        log.info("closing a connection whose request headers were late", extra={"client": str(conn.client)})
        shut_down_reading(conn.sock)


class ShimServer(BaseApplication):
    """gunicorn, configured from ``Settings`` instead of the command line."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        http = self.settings.http
        options: dict[str, Any] = {
            "bind": f"{http.host}:{http.port}",
            "workers": 1,
            "worker_class": "http_shim.server.HeaderDeadlineWorker",
            "threads": http.threads,
            # gthread heartbeats from its main loop, so long inferences do not trip this
            "timeout": int(http.request_timeout),
            "graceful_timeout": int(http.request_timeout),
            "keepalive": 5,
            "accesslog": None,
            "loglevel": self.settings.log_level.lower(),
            # No gunicornc control socket (gunicorn >= 25.1): nothing here uses it, and its
            # default path is under $HOME, which an arbitrary UID (HOME=/) cannot write.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)
        HeaderDeadlineWorker.header_timeout = http.header_timeout

    def load(self) -> Flask:
        """Runs in the worker process after fork: no CUDA state is shared with the master."""
        from consumer.wiring import build_service, load_in_background
        from http_shim import create_app

        service = build_service(self.settings, max_pending=self.settings.http.max_queued_jobs)
        load_in_background(service.engine)
        if self.settings.receiver.enabled and service.webhooks is not None:  # an event door sends them
            service.webhooks.start()
        return create_app(service.analyzer, self.settings, service.event_job, service.jobs)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``diarization-shim``; all settings come from the environment."""
    argparse.ArgumentParser(
        prog="diarization-shim",
        description="Serve the diarization HTTP API (/v1/diarize, /v1/vad, /health, /ready, /metrics). "
        "Configured with environment variables; see the README.",
    ).parse_args(argv)
    settings = from_environment()
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting HTTP shim", extra={"settings": settings.describe()})
    try:  # before gunicorn forks: a door nobody chose to open stops the shim with its reason
        check_doors(settings)
        if settings.receiver.enabled:
            SenderAuth.from_settings(settings.receiver)
    except SettingsError as exc:
        log.critical("refusing to start", extra={"error": str(exc)})
        return 2
    ShimServer(settings).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bounds on how long a client may take to send its request (slow loris).

gunicorn reads from blocking sockets without a timeout, and marks request bodies
"terminated" so that werkzeug reads until EOF. A client that trickles its headers or its
body would then hold a worker thread for as long as it likes, and one that stops early
would look like a short but complete upload. Here:

- ``Watchdog`` shuts down the connection of a request whose headers (see
  ``http_shim.server.HeaderDeadlineWorker``) or body are late, which ends the blocked read;
- ``bound_body`` gives each body a deadline: ``read_timeout`` plus its length at
  ``MIN_UPLOAD_BYTES_PER_SECOND``; a late body raises ``TimeoutError`` (answered 408 in
  ``http_shim.errors``). With a ``Content-Length``, werkzeug again stops at that length and
  reports a body that ends early (answered 400 ``incomplete_body``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Hashable
from typing import IO, Any

MIN_UPLOAD_BYTES_PER_SECOND = 64 * 1024


class Watchdog:
    """Calls each armed callback once its deadline has passed, from one daemon thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self._interval = interval
        self._due: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, key: Hashable, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` in ``seconds`` unless ``disarm(key)`` comes first."""
        with self._guard:
            self._due[key] = (time.monotonic() + seconds, callback)
            if self._thread is None:  # started lazily: in the process that uses it, after any fork
                self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
                self._thread.start()

    def disarm(self, key: Hashable) -> None:
        """Forget ``key``'s deadline."""
        with self._guard:
            self._due.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            now = time.monotonic()
            with self._guard:
                overdue = [key for key, (deadline, _) in self._due.items() if deadline < now]
                callbacks = [self._due.pop(key)[1] for key in overdue]
            for callback in callbacks:
                callback()


def shut_down_reading(connection: socket.socket) -> None:
    """End any read blocked on ``connection``: it returns EOF at once."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RD)


_BODIES = Watchdog()


class DeadlineInput:
    """A ``wsgi.input`` that stops reading once its deadline has passed."""

    def __init__(
        self, stream: IO[bytes], connection: socket.socket, read_timeout: float, budget: float, length: int | None
    ) -> None:
        self._stream = stream
        self._connection = connection
        self._read_timeout = read_timeout
        self._length = length
        self._received = 0
        self._expired = False
        _BODIES.arm(self, budget, self._expire)

    def read(self, size: int = -1) -> bytes:
        return self._checked(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._checked(self._stream.readline, size)

    def finish(self) -> None:
        """The body is read (or will not be): drop its deadline."""
        _BODIES.disarm(self)

    def _checked(self, read: Callable[[int], bytes], size: int) -> bytes:
        if self._expired:
            raise TimeoutError("the request body arrived too slowly")
        self._connection.settimeout(self._read_timeout)  # a single stalled read ends sooner
        data = read(size)
        if self._expired:
            raise TimeoutError("the request body arrived too slowly")
        self._received += len(data)
        if not data or (self._length is not None and self._received >= self._length):
            self.finish()
        return data

    def _expire(self) -> None:
        self._expired = True
        shut_down_reading(self._connection)


def bound_body(environ: dict[str, Any], read_timeout: float, max_bytes: int) -> None:
    """Put a deadline on this request's body, if it has one; a no-op outside gunicorn."""
    connection = environ.get("gunicorn.socket")
    raw_length = environ.get("CONTENT_LENGTH") or ""
    length = int(raw_length) if raw_length.isdigit() else None
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if connection is None or not (length or chunked):
        return
    if length is not None:
        environ.pop("wsgi.input_terminated", None)
    budget = read_timeout + (length if length is not None else max_bytes) / MIN_UPLOAD_BYTES_PER_SECOND
    environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], connection, read_timeout, budget, length)


def finish_body(environ: dict[str, Any]) -> None:
    """At the end of a request: drop its body deadline, read or not."""
    stream = environ.get("wsgi.input")
    if isinstance(stream, DeadlineInput):
        stream.finish()

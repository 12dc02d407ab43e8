"""Durable starts of each input's job: one input cannot take down the fleet, and a moved
partition does not start a job twice.

An input that kills its consumer (out of memory, a native crash) is never committed, so
Kafka hands it to the next consumer, which dies the same way. The Kafka worker therefore
counts each start of an input's job in a small marker object in the results bucket
before running it, and removes the marker once the answer is published: the count only
grows with starts that died on the way. When it would pass ``MAX_ATTEMPTS`` the input is
answered ``too_many_attempts`` instead of being run again.

The marker is also a lease: its owner renews it while the job runs. When the partition
moves to another consumer meanwhile (a rebalance), the new owner finds a live lease of
another consumer and waits (``RunningElsewhereError``, retryable) instead of starting the
job again; the first owner, which may no longer commit, marks the marker answered once
its answer is published, and the new owner then commits without answering again.
"""

from __future__ import annotations

import hashlib
import io
import json
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from consumer.errors import RunningElsewhereError, ServiceError, StorageUnavailableError
from consumer.events import InputRef
from consumer.storage import StoreHealth, results_bucket_error

T = TypeVar("T")
MARKER_PREFIX = "attempts/"  # in the results bucket; result objects end in .json or .rttm, markers do not
LEASE_SECONDS = 30.0  # a start not renewed for this long belongs to a consumer that died
ANSWERED = 0  # what ``begin`` returns for an input another consumer has answered meanwhile
_MISSING = {"NoSuchKey", "NoSuchObject"}


class AttemptLog(Protocol):
    """Starts of each input's job whose answer has not been published yet.

    Every method blocks on the store and raises ``StorageUnavailableError`` (retryable)
    when it cannot be read or written; the caller backs off and tries again.
    """

    def begin(self, ref: InputRef) -> int:
        """Count one more start of ``ref``'s job; the number of unanswered starts, this one included.

        Returns ``ANSWERED`` if another consumer has published its answer since; raises
        ``RunningElsewhereError`` (retryable) while another consumer's start is alive.
        """
        ...

    def renew(self, ref: InputRef) -> None:
        """Keep this consumer's start of ``ref`` alive; called at least every third of ``LEASE_SECONDS``."""
        ...

    def answered(self, ref: InputRef) -> None:
        """Record that ``ref``'s answer is published, for a consumer that takes it over uncommitted."""
        ...

    def settle(self, ref: InputRef, starts: int = 0) -> None:
        """Set ``ref``'s count to ``starts``: 0 (answered and committed) removes its marker."""
        ...


class StoredAttempts:
    """An ``AttemptLog`` kept as one small JSON object per input, ``attempts/<sha256>``, in ``bucket``.

    ``owner`` names this consumer (its static group member id, or host and process).
    ``health`` is the object store's health that the consumer's ``/ready`` reports: a marker
    the store refuses (rotated credentials, say) turns it 503 like any other call of the
    service's own. ``clock`` gives wall-clock seconds: leases are compared across machines.
    """

    def __init__(
        self,
        client: Minio,
        bucket: str,
        owner: str,
        health: StoreHealth | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.owner = owner
        self.health = health or StoreHealth()
        self.clock = clock

    def begin(self, ref: InputRef) -> int:
        """Read the marker, write it back counted (two consumers racing here can lose one count)."""
        key = marker_key(ref)
        marker = self._read(key)
        if marker.get("answered"):
            return ANSWERED
        starts = int(marker.get("starts", 0))
        alive = self.clock() - float(marker.get("renewed", 0.0)) < LEASE_SECONDS
        if starts and marker.get("owner") != self.owner and alive:
            raise RunningElsewhereError(f"{marker.get('owner')} is running this job")
        self._write(key, ref, starts + 1)
        return starts + 1

    def renew(self, ref: InputRef) -> None:
        """Write the marker again with the current time."""
        key = marker_key(ref)
        self._write(key, ref, max(1, int(self._read(key).get("starts", 0))))

    def answered(self, ref: InputRef) -> None:
        """Mark the marker answered."""
        key = marker_key(ref)
        self._write(key, ref, int(self._read(key).get("starts", 0)), answered=True)

    def settle(self, ref: InputRef, starts: int = 0) -> None:
        """Remove the marker, or write ``starts`` into it."""
        key = marker_key(ref)
        if starts > 0:
            self._write(key, ref, starts)
        else:
            self._call(lambda: self.client.remove_object(self.bucket, key))

    def _read(self, key: str) -> dict[str, Any]:
        def get() -> bytes:
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        try:
            marker = json.loads(self._call(get))
        except _Missing:
            return {}
        except ValueError:  # not a marker this service wrote: count afresh
            return {}
        return marker if isinstance(marker, dict) and isinstance(marker.get("starts"), int) else {}

    def _write(self, key: str, ref: InputRef, starts: int, answered: bool = False) -> None:
        marker = {
            "starts": starts,
            "owner": self.owner,
            "renewed": self.clock(),
            "answered": answered,
            "input": {"id": ref.id[:256], "source": ref.source[:256]},
        }
        body = json.dumps(marker).encode()
        self._call(
            lambda: self.client.put_object(
                self.bucket, key, io.BytesIO(body), len(body), content_type="application/json"
            )
        )

    def _call(self, action: Callable[[], T]) -> T:
        """``action()``, its outcome noted in ``health``; a missing marker raises ``_Missing``."""
        try:
            result = _checked(action)
        except _Missing:
            self.health.record("attempt marker", None)  # the store answered: no marker
            raise
        except ServiceError as exc:
            self.health.record("attempt marker", exc)
            raise
        self.health.record("attempt marker", None)
        return result


def marker_key(ref: InputRef) -> str:
    """The marker of ``ref``: a digest, since input ids may be long or hold any character."""
    return MARKER_PREFIX + hashlib.sha256(f"{ref.source}\n{ref.id}".encode()).hexdigest()


class _Missing(Exception):
    """The marker does not exist."""


def _checked(action: Callable[[], T]) -> T:
    """``action()`` with the store's failures as retryable service errors: a marker the
    service cannot read or write is the service's problem, never the input's."""
    try:
        return action()
    except S3Error as exc:
        if exc.code in _MISSING:
            raise _Missing() from exc
        raise results_bucket_error(exc, "the attempt marker") from exc
    except (urllib3.exceptions.HTTPError, ServerError, InvalidResponseError, ssl.SSLError, OSError) as exc:
        raise StorageUnavailableError(f"the object store is unavailable: {type(exc).__name__}: {exc}") from exc

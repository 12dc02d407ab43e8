"""A durable count of job starts per input, so that one input cannot take down the fleet.

An input that kills its consumer (out of memory, a native crash) is never committed, so
Kafka hands it to the next consumer, which dies the same way. The Kafka worker therefore
counts each start of an input's job in a small marker object in the results bucket
before running it, and removes the marker once the job has an outcome: the count only
grows with starts that died on the way. When it would pass ``MAX_ATTEMPTS`` the input is
answered ``too_many_attempts`` instead of being run again.
"""

from __future__ import annotations

import hashlib
import io
import json
import ssl
from collections.abc import Callable
from typing import Protocol, TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from consumer.errors import StorageUnavailableError
from consumer.events import InputRef

T = TypeVar("T")
MARKER_PREFIX = "attempts/"  # in the results bucket; result objects end in .json or .rttm, markers do not
_MISSING = {"NoSuchKey", "NoSuchObject"}


class AttemptLog(Protocol):
    """Starts of each input's job that have not reached an outcome yet.

    Both methods block on the store and raise ``StorageUnavailableError`` (retryable)
    when it cannot be read or written; the caller backs off and tries again.
    """

    def begin(self, ref: InputRef) -> int:
        """Count one more start of ``ref``'s job; the number of unfinished starts, this one included."""
        ...

    def settle(self, ref: InputRef, starts: int = 0) -> None:
        """Set ``ref``'s count to ``starts``: 0 (the job has an outcome) removes its marker."""
        ...


class StoredAttempts:
    """An ``AttemptLog`` kept as one small JSON object per input, ``attempts/<sha256>``, in ``bucket``."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def begin(self, ref: InputRef) -> int:
        """Read the count, write it plus one (a race between two consumers can lose one count)."""
        key = marker_key(ref)
        starts = self._read(key) + 1
        self._write(key, ref, starts)
        return starts

    def settle(self, ref: InputRef, starts: int = 0) -> None:
        """Remove the marker, or write ``starts`` into it."""
        key = marker_key(ref)
        if starts > 0:
            self._write(key, ref, starts)
        else:
            _call(lambda: self.client.remove_object(self.bucket, key))

    def _read(self, key: str) -> int:
        def get() -> bytes:
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        try:
            body = _call(get)
        except _Missing:
            return 0
        try:
            return max(0, int(json.loads(body)["starts"]))
        except (ValueError, KeyError, TypeError):  # not a marker this service wrote: count afresh
            return 0

    def _write(self, key: str, ref: InputRef, starts: int) -> None:
        body = json.dumps({"starts": starts, "input": {"id": ref.id[:256], "source": ref.source[:256]}}).encode()
        _call(
            lambda: self.client.put_object(
                self.bucket, key, io.BytesIO(body), len(body), content_type="application/json"
            )
        )


def marker_key(ref: InputRef) -> str:
    """The marker of ``ref``: a digest, since input ids may be long or hold any character."""
    return MARKER_PREFIX + hashlib.sha256(f"{ref.source}\n{ref.id}".encode()).hexdigest()


class _Missing(Exception):
    """The marker does not exist."""


def _call(action: Callable[[], T]) -> T:
    """``action()`` with the store's failures as ``StorageUnavailableError``: a marker the
    service cannot read or write is the service's problem, never the input's."""
    try:
        return action()
    except S3Error as exc:
        if exc.code in _MISSING:
            raise _Missing() from exc
        raise StorageUnavailableError(f"the attempt marker failed: {exc.code}: {exc.message}") from exc
    except (urllib3.exceptions.HTTPError, ServerError, InvalidResponseError, ssl.SSLError, OSError) as exc:
        raise StorageUnavailableError(f"the object store is unavailable: {type(exc).__name__}: {exc}") from exc

"""The object store: audio in, result objects out, over the S3 API (MinIO's client).

Audio is streamed into a spooled temporary file with a size cap, never read whole into
memory when large, and pinned to the etag (and version) its stat returned. Every storage
failure becomes one of the project's errors, and who is at fault decides which:

- the input: its object is missing or forbidden (permanent);
- the service: the store is unreachable or failing, refuses the service's own credentials
  or clock, or refuses anything in the service's own results bucket (retryable, and
  ``health`` reports it to ``/ready`` until the same kind of call succeeds again).

Result objects live at ``<prefix><bucket>/<key>/<digest>.json`` and
``<prefix><bucket>/<key>/<digest>.<run>.rttm`` (see ``locate``): one location per source
object, version, options and model, and one RTTM per run, named by the JSON it goes with.
"""

from __future__ import annotations

import errno
import io
import itertools
import json
import logging
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, Literal, TypeVar, cast

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

import schemas
from consumer.config import StorageSettings
from consumer.errors import (
    AccessDeniedError,
    ObjectChangedError,
    ObjectNotFoundError,
    PayloadTooLargeError,
    ServiceError,
    StorageUnavailableError,
    StoreCredentialsError,
    UnacceptableKeyError,
)
from consumer.events import ObjectRef, ResultLocation, is_acceptable_key

log = logging.getLogger(__name__)

T = TypeVar("T")
Use = Literal[
    "audio", "result read", "result write", "attempt marker", "job"
]  # kinds of calls, each healthy or not on its own
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NoSuchObject", "ResourceNotFound"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "InvalidObjectState"}
# The store refuses the service, not the request: rotated, disabled or expired credentials,
# a skewed clock, a wrong region. Retrying succeeds once an operator fixed the service.
_REFUSES_THE_SERVICE = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    "AccountProblem",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
}
_SPOOL_IN_MEMORY = 32 * 1024 * 1024  # larger downloads go to a temporary file
_CHUNK = 1024 * 1024
_UPLOAD_PART = 16 * 1024 * 1024  # a job's upload is sent in parts of this size: the memory it takes
_MAX_KEY_BYTES = 1024  # S3's limit on an object key
SOURCE_ETAG = "source-etag"
RESULT_DIGEST = "result-digest"


class StoreHealth:
    """Whether the object store served the service's last call of each kind; thread-safe.

    Kinds are kept apart so that a store that reads but refuses result writes stays failing
    while a retried job reads successfully before it writes again.
    """

    def __init__(self) -> None:
        self._failures: dict[Use, ServiceError] = {}
        self._guard = threading.Lock()

    @property
    def failure(self) -> ServiceError | None:
        """A service fault (``StorageUnavailableError``) of the last call of some kind, or None."""
        with self._guard:
            return next(iter(self._failures.values()), None)

    def record(self, use: Use, failure: ServiceError | None) -> None:
        """Note the outcome of a call: a service fault, or None when the store answered."""
        with self._guard:
            before = bool(self._failures)
            if failure is None:
                self._failures.pop(use, None)
            else:
                self._failures[use] = failure
            after = bool(self._failures)
        if after and not before and failure is not None:
            log.warning("the object store fails", extra={"error_code": failure.code, "error": failure.message})
        elif before and not after:
            log.info("the object store serves again")


class ObjectStore:
    """Reads audio and writes results in an S3-compatible store."""

    def __init__(self, settings: StorageSettings, client: Minio | None = None) -> None:
        self.settings = settings
        self.client = client or _client(settings)
        self.health = StoreHealth()

    # --- audio ---------------------------------------------------------------------------

    def stat(self, ref: ObjectRef) -> ObjectRef:
        """``ref`` completed with the object's current etag, size and version."""
        try:
            info = self._call(
                lambda: self.client.stat_object(ref.bucket, ref.key, version_id=ref.version_id), ref, "audio"
            )
        except AccessDeniedError:
            # A HEAD answer has no body, so minio-py calls every 403 AccessDenied: a forbidden
            # object, but also rotated credentials or a skewed clock. A GET of the same object
            # carries the store's real error code (its body is never read).
            self._call(
                lambda: self._close(self.client.get_object(ref.bucket, ref.key, version_id=ref.version_id)),
                ref,
                "audio",
            )
            error = StorageUnavailableError(f"the store denied a HEAD of {ref.bucket}/{ref.key} but allowed its GET")
            raise self._failed("audio", error) from None
        return ObjectRef(
            ref.bucket, ref.key, info.version_id or ref.version_id, (info.etag or "").strip('"'), info.size
        )

    @contextmanager
    def open(self, ref: ObjectRef, max_bytes: int, beat: Callable[[], None] | None = None) -> Iterator[IO[bytes]]:
        """The bytes of the object version ``stat`` returned, as a seekable file, up to ``max_bytes``.

        ``beat`` is called after every chunk received (the job is alive: ``consumer.deadline``).
        Raises ``ObjectChangedError`` when the object was replaced since (its etag differs).
        """
        # pinned: the result is stored as computed from this etag, so it must be these bytes
        pin: dict[str, str | list[str] | tuple[str]] | None = {"If-Match": f'"{ref.etag}"'} if ref.etag else None
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as sink:
            response = self._call(
                lambda: self.client.get_object(ref.bucket, ref.key, version_id=ref.version_id, request_headers=pin),
                ref,
                "audio",
            )
            try:
                received = 0
                for chunk in response.stream(_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise PayloadTooLargeError(f"the object is larger than {max_bytes} bytes")
                    sink.write(chunk)
                    if beat is not None:
                        beat()
            except OSError as exc:
                raise self._failed("audio", _os_error(exc)) from exc
            except (urllib3.exceptions.HTTPError, ssl.SSLError) as exc:
                error = StorageUnavailableError(f"reading {ref.bucket}/{ref.key} failed: {exc}")
                raise self._failed("audio", error) from exc
            finally:
                self._close(response)
            sink.seek(0)
            yield sink

    # --- results -------------------------------------------------------------------------

    def locate(self, ref: ObjectRef, digest: str) -> ResultLocation:
        """Where a run computing ``ref`` with the settings ``digest`` names keeps its results.

        ``<prefix><bucket>/<key>/<digest>.json``, and a fresh ``<digest>.<run>.rttm`` on every
        call, so that concurrent runs never write each other's RTTM. Raises
        ``UnacceptableKeyError`` (``invalid_event``) for a key the service does not take (``is_acceptable_key``), or
        one too long to leave room for the result's name.
        """
        if not is_acceptable_key(ref.key):
            raise UnacceptableKeyError("the object key is not acceptable")
        # a leading "/" would make an empty path segment, which the store refuses in a key
        base = f"{self.settings.results_prefix}{ref.bucket}/{ref.key.lstrip('/')}/{digest}"
        location = ResultLocation(
            self.settings.results_bucket,
            f"{base}.json",
            f"{base}.{uuid.uuid4().hex[:16]}.rttm",
            digest,
            ref.etag or "",
        )
        if len(location.rttm_key.encode()) > _MAX_KEY_BYTES:
            raise UnacceptableKeyError(
                f"the object key is too long: its result key would exceed {_MAX_KEY_BYTES} bytes"
            )
        return location

    def find_result(self, location: ResultLocation) -> dict[str, Any] | None:
        """The stored result document of ``location``'s source version and digest, if there is a sound one.

        None without a source etag to compare (nothing is reused then), when there is none,
        and when the stored one is corrupt or describes something else (it is then computed again).
        """
        if not location.source_etag:
            return None
        where = ObjectRef(location.bucket, location.json_key)
        try:
            response = self._call(
                lambda: self.client.get_object(location.bucket, location.json_key), where, "result read"
            )
        except ObjectNotFoundError:
            return None
        try:
            metadata = {k.lower().removeprefix("x-amz-meta-"): v for k, v in response.headers.items()}
            body = response.read()
        except (urllib3.exceptions.HTTPError, ssl.SSLError, OSError) as exc:
            error = StorageUnavailableError(f"reading {location.json_key} failed: {exc}")
            raise self._failed("result read", error) from exc
        finally:
            self._close(response)
        if metadata.get(SOURCE_ETAG) != location.source_etag or metadata.get(RESULT_DIGEST) != location.digest:
            return None
        problem = _unsound(body, location)
        if problem:
            log.warning(
                "stored result is corrupt; computing it again", extra={"key": location.json_key, "error": problem}
            )
            return None
        document: dict[str, Any] = json.loads(body)
        return document

    def write_result(self, location: ResultLocation, document: dict[str, Any], rttm: str) -> None:
        """Store this run's RTTM, then the JSON document naming it; the JSON is what ``find_result`` trusts."""
        metadata: dict[str, str | list[str] | tuple[str]] = {
            SOURCE_ETAG: location.source_etag,
            RESULT_DIGEST: location.digest,
        }
        self._put(location.bucket, location.rttm_key, rttm.encode(), "text/rttm", metadata)
        document_bytes = json.dumps(document, separators=(",", ":")).encode()
        self._put(location.bucket, location.json_key, document_bytes, "application/json", metadata)

    def _put(
        self, bucket: str, key: str, body: bytes, content_type: str, metadata: dict[str, str | list[str] | tuple[str]]
    ) -> None:
        self._call(
            lambda: self.client.put_object(
                bucket, key, io.BytesIO(body), len(body), content_type=content_type, metadata=metadata
            ),
            ObjectRef(bucket, key),
            "result write",
        )

    # --- attempt markers (consumer.kafka.attempts) ---------------------------------------------

    def read_marker(self, key: str) -> bytes | None:
        """The small object ``key`` of the results bucket, or None when there is none."""
        bucket = self.settings.results_bucket
        try:
            response = self._call(lambda: self.client.get_object(bucket, key), ObjectRef(bucket, key), "attempt marker")
        except ObjectNotFoundError:
            return None
        try:
            return bytes(response.read())
        except (urllib3.exceptions.HTTPError, ssl.SSLError, OSError) as exc:
            error = StorageUnavailableError(f"reading {key} failed: {exc}")
            raise self._failed("attempt marker", error) from exc
        finally:
            self._close(response)

    def write_marker(self, key: str, body: bytes) -> None:
        """Write the small JSON object ``key`` of the results bucket."""
        bucket = self.settings.results_bucket
        self._call(
            lambda: self.client.put_object(bucket, key, io.BytesIO(body), len(body), content_type="application/json"),
            ObjectRef(bucket, key),
            "attempt marker",
        )

    def remove_marker(self, key: str) -> None:
        """Remove the object ``key`` of the results bucket (nothing happens when there is none)."""
        bucket = self.settings.results_bucket
        self._call(lambda: self.client.remove_object(bucket, key), ObjectRef(bucket, key), "attempt marker")

    # --- jobs (consumer.jobs) ---------------------------------------------------------------

    def put_stream(self, ref: ObjectRef, body: IO[bytes], content_type: str, metadata: dict[str, str]) -> ObjectRef:
        """Store ``body`` as ``ref`` in parts of ``_UPLOAD_PART`` (memory does not grow with its size)."""
        meta: dict[str, str | list[str] | tuple[str]] = dict(metadata)
        written = self._call(
            lambda: self.client.put_object(
                ref.bucket,
                ref.key,
                cast(BinaryIO, body),
                -1,
                content_type=content_type,
                metadata=meta,
                part_size=_UPLOAD_PART,
            ),
            ref,
            "job",
        )
        return ObjectRef(ref.bucket, ref.key, written.version_id, (written.etag or "").strip('"'), None)

    def put_json(self, bucket: str, key: str, document: dict[str, Any]) -> None:
        """Store a small JSON document."""
        body = json.dumps(document, separators=(",", ":")).encode()
        self._call(
            lambda: self.client.put_object(bucket, key, io.BytesIO(body), len(body), content_type="application/json"),
            ObjectRef(bucket, key),
            "job",
        )

    def get_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        """A small JSON object, or None when there is none or it is not a JSON object."""
        text = self.get_text(bucket, key)
        try:
            document = json.loads(text) if text is not None else None
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def get_text(self, bucket: str, key: str) -> str | None:
        """A small text object, or None when there is none."""
        try:
            response = self._call(lambda: self.client.get_object(bucket, key), ObjectRef(bucket, key), "job")
        except ObjectNotFoundError:
            return None
        try:
            return bytes(response.read()).decode("utf-8", errors="replace")
        except (urllib3.exceptions.HTTPError, ssl.SSLError, OSError) as exc:
            raise self._failed("job", StorageUnavailableError(f"reading {key} failed: {exc}")) from exc
        finally:
            self._close(response)

    def list_keys(self, bucket: str, prefix: str, start_after: str = "", limit: int = 1000) -> list[str]:
        """Up to ``limit`` keys under ``prefix`` after ``start_after``, in key order, recursively."""

        def keys() -> list[str]:
            found = self.client.list_objects(bucket, prefix=prefix, recursive=True, start_after=start_after or None)
            return [item.object_name for item in itertools.islice(found, limit) if item.object_name]

        return self._call(keys, ObjectRef(bucket, prefix), "job")

    def remove(self, bucket: str, key: str) -> None:
        """Remove one object (nothing happens when there is none)."""
        self._call(lambda: self.client.remove_object(bucket, key), ObjectRef(bucket, key), "job")

    # --- error mapping -------------------------------------------------------------------

    def _call(self, action: Callable[[], T], ref: ObjectRef, use: Use) -> T:
        """``action()``, a call of kind ``use``, its failure as the project's error."""
        try:
            result = action()
        except S3Error as exc:
            raise self._failed(use, _s3_error(exc, f"{ref.bucket}/{ref.key}", own=use != "audio")) from exc
        except (urllib3.exceptions.HTTPError, ServerError, InvalidResponseError, ssl.SSLError) as exc:
            error = StorageUnavailableError(f"the object store is unavailable: {type(exc).__name__}: {exc}")
            raise self._failed(use, error) from exc
        except OSError as exc:
            raise self._failed(use, _os_error(exc)) from exc
        self.health.record(use, None)
        return result

    def _failed(self, use: Use, error: ServiceError) -> ServiceError:
        """``error``, noted in ``health`` if it is a service fault. Other errors say nothing
        about the store's health: a HEAD's ``AccessDenied`` may well be rotated credentials."""
        if isinstance(error, StorageUnavailableError):
            self.health.record(use, error)
        return error

    @staticmethod
    def _close(response: Any) -> None:
        response.close()
        response.release_conn()


def _unsound(body: bytes, location: ResultLocation) -> str:
    """Why a stored result document cannot be trusted, or "" if it can."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        return f"not JSON: {exc}"
    error = next(iter(schemas.validator("job-completed").iter_errors(document)), None)
    if error is not None:
        return f"not a job-completed document: {error.message}"
    if document["results"]["json"] != location.json_key or document["object"].get("etag") != location.source_etag:
        return "it describes another object or location"
    return ""


def _s3_error(exc: S3Error, where: str, *, own: bool = False) -> ServiceError:
    """The project's error for an S3 error answer; ``own``: on the service's results bucket."""
    if exc.code in _REFUSES_THE_SERVICE:
        return StoreCredentialsError(f"the object store refuses the service on {where}: {exc.code}: {exc.message}")
    if exc.code == "PreconditionFailed":  # only the pinned GET sends a precondition
        return ObjectChangedError(f"{where} changed since it was looked up")
    if own:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            return ObjectNotFoundError(f"{where} does not exist ({exc.code})")
        # the results bucket is the service's own: whatever it refuses is not an input's fault
        return StorageUnavailableError(f"the object store refused {where}: {exc.code}: {exc.message}")
    if exc.code in _MISSING:
        return ObjectNotFoundError(f"{where} does not exist ({exc.code})")
    if exc.code in _DENIED:
        return AccessDeniedError(f"the service may not read {where} ({exc.code})")
    status = getattr(exc.response, "status", 500)
    if 400 <= status < 500 and status not in (408, 429):
        # the store refuses the request itself (a name it cannot address, a malformed
        # version id): asking again cannot help
        return UnacceptableKeyError(f"the object store refused {where}: {exc.code}: {exc.message}")
    return StorageUnavailableError(f"the object store failed on {where}: {exc.code}: {exc.message}")


def results_bucket_error(exc: S3Error, where: str) -> ServiceError:
    """The project's error for an S3 error answer on the service's own results bucket."""
    return _s3_error(exc, where, own=True)


def _os_error(exc: OSError) -> ServiceError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageUnavailableError("no space left for temporary files")
    return StorageUnavailableError(f"I/O error: {exc}")


# Every call's worst case: connect, then at most READ_TIMEOUT_SECONDS waiting for each piece of
# the answer, once. Well below the consumer's liveness timeout (LIVENESS_TIMEOUT_SECONDS, 60):
# a store that accepts connections and never answers costs a call 20 s, not minutes.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 15.0


def _client(settings: StorageSettings) -> Minio:
    """A MinIO client with short timeouts and no retries of its own: the caller owns backoff."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        # No client retries: urllib3's own (with a 60 s read timeout) let one call block for
        # 181 s against a store that never answers. MinIO answers 503 with Retry-After: 60
        # while it starts or stops; every caller retries the service's errors with its backoff.
        retries=False,
        maxsize=8,
        cert_reqs="CERT_REQUIRED" if settings.secure else "CERT_NONE",
        ca_certs=settings.ca_bundle or certifi.where(),
    )
    return Minio(
        settings.endpoint,
        access_key=settings.access_key.value or None,
        secret_key=settings.secret_key.value or None,
        secure=settings.secure,
        region=settings.region or None,
        http_client=http,
    )

"""The object store: audio in, result objects out, over the S3 API (MinIO's client).

Audio is streamed into a spooled temporary file with a size cap, never read whole into
memory when large. Result objects carry the source's etag and an options digest in
their metadata, which makes a repeated job recognisable (idempotency). Every storage
failure becomes one of the project's errors: missing or forbidden objects are permanent,
anything else (connection refused, 5xx, a full temp disk) is retryable.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from consumer.config import StorageSettings
from consumer.errors import (
    AccessDeniedError,
    InvalidEventError,
    ObjectNotFoundError,
    PayloadTooLargeError,
    ServiceError,
    StorageUnavailableError,
)
from consumer.events import ObjectRef, ResultLocation, is_acceptable_key

log = logging.getLogger(__name__)

T = TypeVar("T")
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NoSuchObject", "ResourceNotFound"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidObjectState"}
_SPOOL_IN_MEMORY = 32 * 1024 * 1024  # larger downloads go to a temporary file
_CHUNK = 1024 * 1024
SOURCE_ETAG = "source-etag"
OPTIONS_DIGEST = "options-digest"


class ObjectStore:
    """Reads audio and writes results in an S3-compatible store."""

    def __init__(self, settings: StorageSettings, client: Minio | None = None) -> None:
        self.settings = settings
        self.client = client or _client(settings)

    # --- audio ---------------------------------------------------------------------------

    def stat(self, ref: ObjectRef) -> ObjectRef:
        """``ref`` completed with the object's current etag, size and version."""
        info = self._call(lambda: self.client.stat_object(ref.bucket, ref.key, version_id=ref.version_id), ref)
        return ObjectRef(
            ref.bucket, ref.key, info.version_id or ref.version_id, (info.etag or "").strip('"'), info.size
        )

    @contextmanager
    def open(self, ref: ObjectRef, max_bytes: int) -> Iterator[IO[bytes]]:
        """The object's bytes as a seekable file, downloaded in chunks up to ``max_bytes``."""
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as sink:
            response = self._call(lambda: self.client.get_object(ref.bucket, ref.key, version_id=ref.version_id), ref)
            try:
                received = 0
                for chunk in response.stream(_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise PayloadTooLargeError(f"the object is larger than {max_bytes} bytes")
                    sink.write(chunk)
            except OSError as exc:
                raise _os_error(exc) from exc
            except (urllib3.exceptions.HTTPError, ssl.SSLError) as exc:
                raise StorageUnavailableError(f"reading {ref.bucket}/{ref.key} failed: {exc}") from exc
            finally:
                response.close()
                response.release_conn()
            sink.seek(0)
            yield sink

    # --- results -------------------------------------------------------------------------

    def locate(self, ref: ObjectRef) -> ResultLocation:
        """Where the results of ``ref`` go: under the results prefix, whatever the key.

        Raises ``InvalidEventError`` for a key the service does not take (``is_acceptable_key``).
        """
        if not is_acceptable_key(ref.key):
            raise InvalidEventError("the object key is not acceptable")
        base = f"{self.settings.results_prefix}{ref.key.lstrip('/')}"
        return ResultLocation(self.settings.results_bucket, f"{base}.json", f"{base}.rttm")

    def find_result(self, location: ResultLocation, source: ObjectRef, options_digest: str) -> dict[str, Any] | None:
        """The stored result document of this source version and options, if there is one."""
        where = ObjectRef(location.bucket, location.json_key)
        try:
            info = self._call(lambda: self.client.stat_object(location.bucket, location.json_key), where)
        except ObjectNotFoundError:
            return None
        metadata = {k.lower().removeprefix("x-amz-meta-"): v for k, v in (info.metadata or {}).items()}
        if metadata.get(SOURCE_ETAG) != source.etag or metadata.get(OPTIONS_DIGEST) != options_digest:
            return None
        response = self._call(lambda: self.client.get_object(location.bucket, location.json_key), where)
        try:
            return json.loads(response.read())
        finally:
            response.close()
            response.release_conn()

    def write_result(
        self, location: ResultLocation, source: ObjectRef, options_digest: str, document: dict[str, Any], rttm: str
    ) -> None:
        """Store the RTTM, then the JSON document; the JSON is what ``find_result`` trusts."""
        metadata: dict[str, str | list[str] | tuple[str]] = {
            SOURCE_ETAG: source.etag or "",
            OPTIONS_DIGEST: options_digest,
        }
        for key, body, content_type in (
            (location.rttm_key, rttm.encode(), "text/rttm"),
            (location.json_key, json.dumps(document, separators=(",", ":")).encode(), "application/json"),
        ):
            self._put(location.bucket, key, body, content_type, metadata)

    def _put(
        self, bucket: str, key: str, body: bytes, content_type: str, metadata: dict[str, str | list[str] | tuple[str]]
    ) -> None:
        self._call(
            lambda: self.client.put_object(
                bucket, key, io.BytesIO(body), len(body), content_type=content_type, metadata=metadata
            ),
            ObjectRef(bucket, key),
        )

    # --- error mapping -------------------------------------------------------------------

    def _call(self, action: Callable[[], T], ref: ObjectRef) -> T:
        try:
            return action()
        except S3Error as exc:
            raise _s3_error(exc, f"{ref.bucket}/{ref.key}") from exc
        except (urllib3.exceptions.HTTPError, ServerError, InvalidResponseError, ssl.SSLError) as exc:
            raise StorageUnavailableError(f"the object store is unavailable: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise _os_error(exc) from exc


def _s3_error(exc: S3Error, where: str) -> ServiceError:
    if exc.code in _MISSING:
        return ObjectNotFoundError(f"{where} does not exist ({exc.code})")
    if exc.code in _DENIED:
        return AccessDeniedError(f"the service may not read {where} ({exc.code})")
    status = getattr(exc.response, "status", 500)
    if 400 <= status < 500 and status not in (408, 429):
        # the store refuses the request itself (a name it cannot address, a malformed
        # version id): asking again cannot help
        return InvalidEventError(f"the object store refused {where}: {exc.code}: {exc.message}")
    return StorageUnavailableError(f"the object store failed on {where}: {exc.code}: {exc.message}")


def _os_error(exc: OSError) -> ServiceError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageUnavailableError("no space left for temporary files")
    return StorageUnavailableError(f"I/O error: {exc}")


def _client(settings: StorageSettings) -> Minio:
    """A MinIO client with short timeouts and few retries: the caller owns backoff."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=60),
        # MinIO answers 503 with Retry-After: 60 while it starts or stops; obeying it would
        # stall a call for minutes, invisibly. Fail fast: the caller's backoff takes over.
        retries=urllib3.Retry(
            total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504), respect_retry_after_header=False
        ),
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

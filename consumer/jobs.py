"""Asynchronous jobs (``/v1/jobs``): where a job lives in the object store, and its status.

A job is an upload like any other: the shim stores its audio in the upload bucket under
``S3_JOBS_PREFIX``, with the options as object metadata, and the bucket's notification makes
it an ``audio.uploaded`` input of the event pipeline (Kafka or Knative). So a job survives a
restart of the shim, runs on any consumer, and follows the same at-least-once, attempts and
result-layout rules as every input. There is no database: the state is in the store.

``<upload bucket>/<jobs prefix><id>/audio``                       the audio (options as metadata)
``<results bucket>/<results prefix><jobs prefix><id>.json``        the job's record, written first
``<results bucket>/<results prefix><upload bucket>/<jobs prefix><id>/audio/``
    ``<digest>.json``, ``<digest>.<run>.rttm``                   the result objects (``consumer.storage``)
    ``state.json``                                                ``running`` with progress, or ``failed``
    ``voiceprints.json``, ``transcript``                          the job's parts, when it has them

Job ids sort newest first (a reversed millisecond clock, then random digits), so listing the
records in key order lists the newest jobs first.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from consumer.config import StorageSettings
from consumer.errors import JobNotFoundError, ServiceError
from consumer.events import AudioJobRequested, DiarizationCompleted, JobFailed, ObjectRef
from consumer.options import StoredObject

log = logging.getLogger(__name__)

_CLOCK_SPAN = 10**13  # milliseconds: the reversed clock stays 13 digits until the year 2286
_ID = re.compile(r"^[0-9]{13}[0-9a-f]{10}$")
_RESULT_JSON = re.compile(r"^[0-9a-f]{32}\.json$")
AUDIO_NAME = "audio"
STATE_NAME = "state.json"
# what a job takes besides its audio, stored beside its results (too large for metadata):
# the option each fills in, and the object's name
PART_NAMES = {"voiceprints_object": "voiceprints.json", "transcript_object": "transcript"}


def new_job_id(now: float | None = None) -> str:
    """A fresh job id: 13 digits of reversed milliseconds, then 10 random hex digits."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{_CLOCK_SPAN - 1 - millis:013d}{secrets.token_hex(5)}"


def is_job_id(text: str) -> bool:
    """Whether ``text`` has the shape of a job id (nothing else reaches the store as one)."""
    return _ID.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class JobLayout:
    """Where a job's objects are, from the storage settings: one rule for the shim and the consumer."""

    upload_bucket: str
    results_bucket: str
    results_prefix: str
    jobs_prefix: str

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> JobLayout:
        return cls(settings.upload_bucket, settings.results_bucket, settings.results_prefix, settings.jobs_prefix)

    def audio(self, job_id: str) -> ObjectRef:
        """The job's audio object."""
        return ObjectRef(self.upload_bucket, f"{self.jobs_prefix}{job_id}/{AUDIO_NAME}")

    def record_key(self, job_id: str) -> str:
        """The job's record, in the results bucket."""
        return f"{self.records_prefix}{job_id}.json"

    @property
    def records_prefix(self) -> str:
        return f"{self.results_prefix}{self.jobs_prefix}"

    def results_prefix_of(self, job_id: str) -> str:
        """Where the job's result objects and state are, in the results bucket."""
        return f"{self.results_prefix}{self.upload_bucket}/{self.audio(job_id).key}/"

    def state_key(self, job_id: str) -> str:
        return f"{self.results_prefix_of(job_id)}{STATE_NAME}"

    def part(self, job_id: str, option: str) -> ObjectRef:
        """Where the job keeps the part that fills ``option`` (``PART_NAMES``), in the results bucket."""
        return ObjectRef(self.results_bucket, f"{self.results_prefix_of(job_id)}{PART_NAMES[option]}")

    def job_of(self, ref: ObjectRef) -> str | None:
        """The id of the job whose audio ``ref`` is, or None for any other object."""
        if ref.bucket != self.upload_bucket or not ref.key.startswith(self.jobs_prefix):
            return None
        job_id, _, name = ref.key[len(self.jobs_prefix) :].partition("/")
        return job_id if name == AUDIO_NAME and is_job_id(job_id) else None


class JobObjects(Protocol):
    """The store calls jobs need (``consumer.storage.ObjectStore``); each blocks and raises the
    project's errors: ``ObjectNotFoundError`` for a missing object, ``StorageUnavailableError``
    (retryable) for a store that fails."""

    def put_stream(self, ref: ObjectRef, body: IO[bytes], content_type: str, metadata: dict[str, str]) -> ObjectRef:
        """Store ``body`` (read to its end, in parts) as ``ref``; returns it with its etag and size."""
        ...

    def put_json(self, bucket: str, key: str, document: dict[str, Any]) -> None:
        """Store a small JSON document."""
        ...

    def get_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        """A small JSON document, or None when there is none (or it is not a JSON object)."""
        ...

    def get_text(self, bucket: str, key: str) -> str | None:
        """A small text object, or None when there is none."""
        ...

    def list_keys(self, bucket: str, prefix: str, start_after: str = "", limit: int = 1000) -> list[str]:
        """Up to ``limit`` keys under ``prefix`` after ``start_after``, in key order, recursively."""
        ...

    def remove(self, bucket: str, key: str) -> None:
        """Remove one object (nothing happens when there is none)."""
        ...


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What ``GET /v1/jobs/{id}`` answers: the record, the status, and its detail."""

    record: dict[str, Any]
    status: str  # queued | running | completed | failed
    progress: dict[str, Any] | None = None  # running: fraction and stage
    result: dict[str, Any] | None = None  # completed: the stored result document
    error: dict[str, str] | None = None  # failed: code and message

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.record, "status": self.status}
        for name in ("progress", "result", "error"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class Jobs:
    """Submit, look up, list and delete jobs in the object store (the shim's side)."""

    def __init__(self, store: JobObjects, layout: JobLayout) -> None:
        self.store = store
        self.layout = layout

    def submit(
        self,
        audio: IO[bytes],
        metadata: dict[str, str],
        record: dict[str, Any],
        parts: dict[str, bytes] | None = None,
        source: StoredObject | None = None,
    ) -> dict[str, Any]:
        """Store a new job: its record (``queued``), its parts, then its audio, whose notification starts it.

        ``metadata`` carries the options as the bucket notification reads them; ``parts`` the
        bytes of the objects that fill ``PART_NAMES``' options (voiceprints, a transcript),
        which the record names under ``inputs``. With ``source`` (an object already in a bucket
        the service reads), ``audio`` is empty: the record names the source under ``source``
        and the consumer reads that instead. Returns the record. A store failure before the
        audio is stored removes the record and the parts.
        """
        job_id = new_job_id()
        refs = {option: self.layout.part(job_id, option) for option in parts or {}}
        record = {"id": job_id, **record}
        if refs:
            record["inputs"] = {option: {"bucket": ref.bucket, "key": ref.key} for option, ref in refs.items()}
        if source is not None:
            record["source"] = {"bucket": source.bucket, "key": source.key}
        self.store.put_json(self.layout.results_bucket, self.layout.record_key(job_id), record)
        try:
            for option, ref in refs.items():
                self.store.put_stream(ref, io.BytesIO((parts or {})[option]), "application/octet-stream", {})
            stored = self.store.put_stream(self.layout.audio(job_id), audio, "application/octet-stream", metadata)
        except ServiceError:
            self._forget(job_id, refs.values())
            raise
        log.info("job submitted", extra={"job_id": job_id, "object": stored.partition_key, "etag": stored.etag})
        return record

    def status(self, job_id: str) -> JobStatus:
        """The job's status; ``JobNotFoundError`` when there is no such job."""
        record = self._record(job_id)
        bucket = self.layout.results_bucket
        keys = self.store.list_keys(bucket, self.layout.results_prefix_of(job_id))
        names = {key.rsplit("/", 1)[-1]: key for key in keys}
        for name, key in names.items():
            if _RESULT_JSON.fullmatch(name):
                document = self.store.get_json(bucket, key)
                if document is not None:
                    return JobStatus(record, "completed", result=document)
        state = self.store.get_json(bucket, self.layout.state_key(job_id)) if STATE_NAME in names else None
        if state is not None and state.get("status") == "failed":
            return JobStatus(record, "failed", error=state.get("error"))
        if state is not None and state.get("status") == "running":
            return JobStatus(record, "running", progress=state.get("progress"))
        return JobStatus(record, "queued")

    def rttm(self, job_id: str) -> str | None:
        """The RTTM of a completed job, or None when it is not completed."""
        found = self.status(job_id)
        key = (found.result or {}).get("results", {}).get("rttm")
        return self.store.get_text(self.layout.results_bucket, key) if isinstance(key, str) else None

    def recent(self, cursor: str = "", limit: int = 20) -> tuple[list[JobStatus], str | None]:
        """Up to ``limit`` jobs, newest first, after the job id ``cursor``; and the next cursor (None at the end)."""
        prefix = self.layout.records_prefix
        after = self.layout.record_key(cursor) if cursor else ""
        keys = self.store.list_keys(self.layout.results_bucket, prefix, after, limit + 1)
        ids = [key[len(prefix) :].removesuffix(".json") for key in keys]
        found = []
        for job_id in (i for i in ids[:limit] if is_job_id(i)):
            try:
                found.append(self.status(job_id))
            except JobNotFoundError:  # deleted while listing
                continue
        return found, (ids[limit - 1] if len(ids) > limit else None)

    def delete(self, job_id: str) -> JobStatus:
        """Cancel a queued job or delete a finished one: its audio, results, state and record.

        A job deleted while it runs may still finish; its results are then left to the
        results bucket's lifecycle rule (as superseded results are). Returns the status it had.
        """
        found = self.status(job_id)
        self.store.remove(self.layout.upload_bucket, self.layout.audio(job_id).key)
        for key in self._result_keys(job_id):
            self.store.remove(self.layout.results_bucket, key)
        self.store.remove(self.layout.results_bucket, self.layout.record_key(job_id))
        log.info("job deleted", extra={"job_id": job_id, "status": found.status})
        return found

    def _record(self, job_id: str) -> dict[str, Any]:
        record = (
            self.store.get_json(self.layout.results_bucket, self.layout.record_key(job_id))
            if is_job_id(job_id)
            else None
        )
        if record is None:
            raise JobNotFoundError(f"there is no job {job_id!r}")
        return record

    def _result_keys(self, job_id: str) -> Iterator[str]:
        yield from self.store.list_keys(self.layout.results_bucket, self.layout.results_prefix_of(job_id))

    def _forget(self, job_id: str, parts: Iterable[ObjectRef]) -> None:
        try:
            for part in parts:
                self.store.remove(part.bucket, part.key)
            self.store.remove(self.layout.results_bucket, self.layout.record_key(job_id))
        except ServiceError as exc:
            log.warning("a failed job's record could not be removed", extra={"job_id": job_id, "error": exc.message})


@dataclass(frozen=True, slots=True)
class JobInputs:
    """A job's parts (options -> the objects that fill them) and the object it refers to, if any."""

    parts: dict[str, StoredObject] = field(default_factory=dict)
    source: StoredObject | None = None


class Notifier(Protocol):
    """Told when a job with a ``webhook_url`` finishes (``consumer.webhooks.Outbox``)."""

    def finished(self, job: dict[str, Any]) -> None:
        """Queue the job's webhook: ``job`` is what ``GET /v1/jobs/{id}`` answers (with its
        ``webhook_url``). Blocks on the store; raises ``StorageUnavailableError`` (retryable)."""
        ...


class JobStates:
    """The consumer's side: writes a job's ``running`` progress and ``failed`` outcome, and
    queues the webhook of a finished job that asked for one.

    Only inputs that are jobs' audio (``JobLayout.job_of``) get a state; a job whose record is
    gone (deleted) gets none. Progress is best effort (a failed write is logged); a failure
    is written, and a webhook queued, or the job is retried (``StorageUnavailableError``
    propagates), so that a failed job never shows ``running`` for ever and no webhook is lost.
    """

    def __init__(self, store: JobObjects, layout: JobLayout, notifier: Notifier | None = None) -> None:
        self.store = store
        self.layout = layout
        self.notifier = notifier

    def running(self, request: AudioJobRequested, fraction: float, stage: str) -> None:
        job_id = self.layout.job_of(request.object)
        if job_id is None:
            return
        state = {"status": "running", "progress": {"fraction": round(fraction, 4), "stage": stage}}
        try:
            self._write(job_id, state)
        except ServiceError as exc:
            log.warning("a job's progress was not stored", extra={"job_id": job_id, "error": exc.message})

    def failed(self, outcome: JobFailed) -> None:
        job_id = self.layout.job_of(outcome.object) if outcome.object is not None else None
        if job_id is None:
            return
        error = {"code": outcome.code, "message": outcome.message}
        record = self._write(job_id, {"status": "failed", "error": error})
        self._notify(record, JobStatus(record or {}, "failed", error=error))

    def inputs(self, request: AudioJobRequested) -> JobInputs:
        """What a ``/v1/jobs`` job's record says it reads besides its audio object: its parts
        (only where the job's own layout puts them) and the object it refers to; nothing for
        any other input. Blocks; raises ``StorageUnavailableError`` (retryable) when the store fails."""
        job_id = self.layout.job_of(request.object)
        if job_id is None:
            return JobInputs()
        record = self.store.get_json(self.layout.results_bucket, self.layout.record_key(job_id)) or {}
        named, source = record.get("inputs"), record.get("source")
        parts = {
            option: StoredObject(self.layout.part(job_id, option).bucket, self.layout.part(job_id, option).key)
            for option in (named if isinstance(named, dict) else {})
            if option in PART_NAMES
        }
        if isinstance(source, dict) and isinstance(source.get("bucket"), str) and isinstance(source.get("key"), str):
            return JobInputs(parts, StoredObject(source["bucket"], source["key"]))
        return JobInputs(parts)

    def completed(self, outcome: DiarizationCompleted) -> None:
        job_id = self.layout.job_of(outcome.request.object)
        if job_id is None or self.notifier is None:
            return
        record = self.store.get_json(self.layout.results_bucket, self.layout.record_key(job_id))
        self._notify(record, JobStatus(record or {}, "completed", result=outcome.document))

    def _notify(self, record: dict[str, Any] | None, job: JobStatus) -> None:
        if self.notifier is not None and record is not None and record.get("webhook_url"):
            self.notifier.finished(job.to_dict())

    def _write(self, job_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        """Store the job's state unless it was deleted; returns its record (None: deleted)."""
        bucket = self.layout.results_bucket
        record = self.store.get_json(bucket, self.layout.record_key(job_id))
        if record is not None:
            self.store.put_json(bucket, self.layout.state_key(job_id), {**state, "updated_at": _now()})
        return record


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

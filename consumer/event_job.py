"""``EventJob``: one requested job to its outcome, for the event doors (Kafka and Knative).

Stat the object, reuse a stored result of the same object version, options and model, else
fetch it, run it through the ``Analyzer``, store the result objects and return the outcome
to publish. A result computed but not stored (the store failed) is kept in memory and
stored by the retry, without running the model again. It knows nothing about Kafka, HTTP
or CloudEvents; the object store is any ``ResultStore``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import IO, Any, Protocol

from consumer import metrics
from consumer import transcript as transcripts
from consumer.analyzer import Analyzer, Reservation
from consumer.config import EventSettings
from consumer.deadline import JobWatch
from consumer.errors import (
    AccessDeniedError,
    EngineBrokenError,
    InternalError,
    ModelNotReadyError,
    PayloadTooLargeError,
    ServiceError,
)
from consumer.events import (
    AudioJobRequested,
    DiarizationCompleted,
    JobFailed,
    JobOutcome,
    JobProgressed,
    ObjectRef,
    ResultLocation,
)
from consumer.formats import result_document, rttm_uri, to_rttm
from consumer.jobs import JobInputs, JobStates
from consumer.options import JobOptions, StoredObject
from consumer.voiceprints import MAX_DOCUMENT_BYTES, parse_known_speakers

log = logging.getLogger(__name__)


class ResultStore(Protocol):
    """Where event jobs read audio and keep results (``consumer.storage.ObjectStore``).

    Every method blocks on the store and raises the project's errors: ``ObjectNotFoundError``
    and ``AccessDeniedError`` (permanent: the input's object), ``UnacceptableKeyError`` (``invalid_event``) for a
    name the store cannot take, ``StorageUnavailableError`` (retryable) for anything else,
    including whatever goes wrong in the results bucket: that is never the input's fault.
    """

    def stat(self, ref: ObjectRef) -> ObjectRef:
        """``ref`` completed with the object's current etag, size and version."""
        ...

    def open(
        self, ref: ObjectRef, max_bytes: int, beat: Callable[[], None] | None = None
    ) -> AbstractContextManager[IO[bytes]]:
        """The bytes of the version ``stat`` returned, as a seekable file; ``PayloadTooLargeError``
        past ``max_bytes``, ``ObjectChangedError`` (retryable) if the object was replaced since.
        ``beat`` is called as the download makes progress."""
        ...

    def locate(self, ref: ObjectRef, digest: str) -> ResultLocation:
        """Where one run computing ``ref`` with the settings ``digest`` names keeps its result:
        one JSON location per (object, version, digest), and an RTTM of this run's own; the
        location carries the digest and ``ref``'s etag."""
        ...

    def find_result(self, location: ResultLocation) -> dict[str, Any] | None:
        """The sound stored document computed from the location's source version and digest,
        or ``None`` (also without a source etag, or when the stored one is corrupt)."""
        ...

    def write_result(self, location: ResultLocation, document: dict[str, Any], rttm: str) -> None:
        """Store the RTTM, then the JSON document (which names it) of one run."""
        ...


class EventJob:
    """Runs requested jobs on an ``Analyzer``, with their audio and results in a ``ResultStore``."""

    def __init__(
        self,
        analyzer: Analyzer,
        store: ResultStore,
        *,
        allowed_buckets: frozenset[str],
        events: EventSettings = EventSettings(),
        model_name: str = "",
        model_fingerprint: Callable[[], str] = lambda: "",
        job_states: JobStates | None = None,
    ) -> None:
        """``model_fingerprint`` hashes the model's content; called once a job runs (the model is loaded).
        ``job_states`` records the progress and failure of ``/v1/jobs`` jobs (``consumer.jobs``)."""
        self.analyzer = analyzer
        self.store = store
        self.allowed_buckets = allowed_buckets
        self.events = events
        self.model_name = model_name
        self.model_fingerprint = model_fingerprint
        self.job_states = job_states
        self._unstored: dict[str, _Unstored] = {}  # by JSON key: computed, not stored yet
        self._unstored_guard = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether jobs can run now."""
        return self.analyzer.ready

    def reserve(self) -> Reservation:
        """A slot on the analyzer (see ``Analyzer.reserve``)."""
        return self.analyzer.reserve()

    def handle(
        self,
        request: AudioJobRequested,
        progress: Callable[[JobProgressed], None] | None = None,
        reservation: Reservation | None = None,
        watch: JobWatch | None = None,
    ) -> JobOutcome:
        """Run one requested job to its outcome; blocks.

        Returns ``DiarizationCompleted`` (possibly reused from a stored result) or
        ``JobFailed`` for a permanent failure. Raises retryable ``ServiceError``s
        (storage or model unavailable, no free slot): the caller backs off and tries again.
        The download and every stage after it beat ``watch`` (``consumer.deadline``; a new
        one when none is given), which counts among the analyzer's running ``watches``.
        A ``/v1/jobs`` job's failure is recorded, and its webhook queued, before it is returned.
        """
        started = time.perf_counter()
        watch = watch or JobWatch(self.analyzer.job_limits)
        try:
            with reservation or self.analyzer.reserve() as held, self.analyzer.watches.running(watch):
                outcome = self._handle(request, progress, held, watch)
                if isinstance(outcome, DiarizationCompleted) and self.job_states is not None:
                    self.job_states.completed(outcome)  # its webhook, if it asked for one
        except ServiceError as exc:
            if exc.retryable:
                log.warning(
                    "job will be retried", extra=_job_fields(request, started, error_code=exc.code, error=exc.message)
                )
                raise
            log.info("job failed", extra=_job_fields(request, started, error_code=exc.code, error=exc.message))
            return self.note_failure(JobFailed(request.input, request.object, exc.code, exc.public_message))
        except Exception:  # a bug must not stop the consumer on this message forever
            log.exception("job crashed", extra=_job_fields(request, started))
            return self.note_failure(
                JobFailed(request.input, request.object, InternalError.code, InternalError.public_text)
            )
        if isinstance(outcome, DiarizationCompleted):
            log.info("job done", extra=_job_fields(request, started, reused=outcome.document.get("reused", False)))
        return outcome

    def note_failure(self, outcome: JobFailed) -> JobFailed:
        """Record ``outcome`` as a ``/v1/jobs`` job's state when its object is a job's audio; blocks
        on the store. Raises ``StorageUnavailableError`` (retryable) when the store fails."""
        if self.job_states is not None:
            self.job_states.failed(outcome)
        return outcome

    def _handle(
        self,
        request: AudioJobRequested,
        progress: Callable[[JobProgressed], None] | None,
        reservation: Reservation,
        watch: JobWatch,
    ) -> JobOutcome:
        if request.object.bucket not in self.allowed_buckets:
            raise AccessDeniedError(f"bucket {request.object.bucket!r} is not one this service reads")
        if not self.analyzer.ready:
            broken = self.analyzer.engine.error
            raise broken if isinstance(broken, EngineBrokenError) else ModelNotReadyError("the model is still loading")
        limits = self.analyzer.limits
        obj = self.store.stat(request.object)
        inputs = self.job_states.inputs(request) if self.job_states is not None else JobInputs()
        audio = obj if inputs.source is None else self._stat_source(inputs.source)
        if audio.size is not None and audio.size > limits.max_bytes:
            raise PayloadTooLargeError(f"the object is larger than {limits.max_bytes} bytes")
        request = dataclasses.replace(request, object=obj)
        try:
            fingerprint = self.model_fingerprint()
        except ServiceError as exc:  # the model's files went away under a loaded model
            raise EngineBrokenError(f"the model's content cannot be fingerprinted: {exc.message}") from exc
        options, trusted = request.options, frozenset[StoredObject]()
        own = inputs.parts
        if own:  # a /v1/jobs job's voiceprints and transcript, stored beside its results
            options = dataclasses.replace(
                options,
                exclusive=options.exclusive or "transcript_object" in own,
                voiceprints_object=own.get("voiceprints_object", options.voiceprints_object),
                transcript_object=own.get("transcript_object", options.transcript_object),
            )
            trusted = frozenset(own.values())
        options, transcript, named = self._read_named_objects(options, trusted)
        if audio is not obj:  # a job's result depends on the version of the object it refers to
            named["source"] = json.dumps([audio.bucket, audio.key, audio.version_id, audio.etag])
        request = dataclasses.replace(request, options=options)
        digest = result_digest(obj, options, self.model_name, fingerprint, named)
        location = self.store.locate(obj, digest)
        stored = self.store.find_result(location)
        if stored is not None:
            metrics.JOBS.labels("event", "reused").inc()
            return DiarizationCompleted(request, {**stored, "reused": True})

        with self._unstored_guard:
            unstored = self._unstored.get(location.json_key)
        if unstored is None or unstored.source != obj:
            progress = self._with_job_state(progress)
            if self.job_states is not None:
                self.job_states.running(request, 0.0, "download")
            throttle = _Throttle(self.events, request, progress)
            with self.store.open(audio, limits.max_bytes, beat=watch.beat) as stream:
                result = self.analyzer.analyze(
                    stream,
                    request.options,
                    job_id=request.input.id,
                    progress=throttle,
                    reservation=reservation,
                    watch=watch,
                )
            document = result_document(
                request.input, obj, options, result, self.model_name, location, self.analyzer.engine.embedding_model
            )
            if transcript is not None:
                transcripts.check_fits(transcript, result.duration)
                document["transcript"] = transcripts.to_json(transcripts.attribute(transcript, result.turns))
            unstored = _Unstored(obj, location, document, to_rttm(result, rttm_uri(obj.key)))
            self._keep_unstored(unstored)
        else:
            log.info("storing a result computed before the store failed", extra={"key": location.json_key})
        self.store.write_result(unstored.location, unstored.document, unstored.rttm)
        with self._unstored_guard:
            self._unstored.pop(location.json_key, None)
        return DiarizationCompleted(request, unstored.document)

    def _with_job_state(
        self, progress: Callable[[JobProgressed], None] | None
    ) -> Callable[[JobProgressed], None] | None:
        """``progress``, also recorded as a ``/v1/jobs`` job's state (at the same throttled pace)."""
        states = self.job_states
        if states is None:
            return progress

        def both(report: JobProgressed) -> None:
            states.running(report.request, report.fraction, "inference")
            if progress is not None:
                progress(report)

        return both

    def _read_named_objects(
        self, options: JobOptions, trusted: frozenset[StoredObject]
    ) -> tuple[JobOptions, transcripts.Transcript | None, dict[str, str]]:
        """The options with the voiceprints of ``voiceprints_object`` read in, the transcript of
        ``transcript_object``, and the sha256 of each object's bytes (the result depends on them).

        A named object missing, unreadable or malformed fails the job like its audio would. Only
        objects in ``allowed_buckets`` are read, and the ``trusted`` ones (a job's own parts).
        """
        transcript, named = None, {}
        if options.voiceprints_object is not None:
            data = self._read_named(options.voiceprints_object, MAX_DOCUMENT_BYTES, trusted)
            named["voiceprints_object"] = hashlib.sha256(data).hexdigest()
            options = dataclasses.replace(options, voiceprints=parse_known_speakers(data))
        if options.transcript_object is not None:
            data = self._read_named(options.transcript_object, transcripts.MAX_TRANSCRIPT_BYTES, trusted)
            named["transcript_object"] = hashlib.sha256(data).hexdigest()
            transcript = transcripts.parse(data)
        return options, transcript, named

    def _stat_source(self, source: StoredObject) -> ObjectRef:
        """The object a ``/v1/jobs`` job refers to, with its version: read like any input's audio."""
        if source.bucket not in self.allowed_buckets:
            raise AccessDeniedError(f"bucket {source.bucket!r} is not one this service reads")
        return self.store.stat(ObjectRef(source.bucket, source.key))

    def _read_named(self, named: StoredObject, max_bytes: int, trusted: frozenset[StoredObject]) -> bytes:
        if named.bucket not in self.allowed_buckets and named not in trusted:
            raise AccessDeniedError(f"bucket {named.bucket!r} is not one this service reads")
        ref = self.store.stat(ObjectRef(named.bucket, named.key))
        if ref.size is not None and ref.size > max_bytes:
            raise PayloadTooLargeError(f"{named.bucket}/{named.key} is larger than {max_bytes} bytes")
        with self.store.open(ref, max_bytes) as handle:
            return handle.read()

    def _keep_unstored(self, unstored: _Unstored) -> None:
        """Remember a computed result until it is stored, so that a retry does not compute it again."""
        with self._unstored_guard:
            self._unstored[unstored.location.json_key] = unstored
            while len(self._unstored) > _MAX_UNSTORED:  # the oldest is recomputed if it comes back
                del self._unstored[next(iter(self._unstored))]


_MAX_UNSTORED = 8  # results kept in memory while the store fails (one per job in flight is enough)


@dataclasses.dataclass(frozen=True, slots=True)
class _Unstored:
    """A computed result the store has not taken yet."""

    source: ObjectRef
    location: ResultLocation
    document: dict[str, Any]
    rttm: str


class _Throttle:
    """Forwards progress of long audio only, at most once per interval."""

    def __init__(
        self, events: EventSettings, request: AudioJobRequested, sink: Callable[[JobProgressed], None] | None
    ) -> None:
        self._events, self._request, self._sink = events, request, sink
        self._last = time.monotonic()

    def __call__(self, fraction: float, audio_seconds: float) -> None:
        if self._sink is None or audio_seconds < self._events.progress_min_audio_seconds or fraction >= 1.0:
            return
        now = time.monotonic()
        if now - self._last >= self._events.progress_interval_seconds:
            self._last = now
            self._sink(JobProgressed(self._request, fraction, audio_seconds))


def result_digest(
    source: ObjectRef,
    options: JobOptions,
    model: str,
    model_fingerprint: str,
    named: dict[str, str] | None = None,
) -> str:
    """Identifies what a result is computed from: the object version, the options (with the
    voiceprints' digests), the model's name and content (``consumer.engine.fingerprint``),
    and the digests of the objects the options name. Names its result location."""
    what: dict[str, object] = {
        "object": [source.bucket, source.key, source.version_id, source.etag],
        "options": options.fingerprint(),
        "model": [model, model_fingerprint],
    }
    if named:
        what["named"] = named
    canonical = json.dumps(what, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _job_fields(request: AudioJobRequested, started: float, **more: object) -> dict[str, object]:
    return {
        "event_id": request.input.id,
        "object": request.object.partition_key,
        "seconds": round(time.perf_counter() - started, 3),
        **more,
    }

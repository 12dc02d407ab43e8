"""``JobHandler``: the one place a job is done, whichever door it came through.

``analyze`` serves the synchronous API: audio bytes in, result out. ``handle`` serves the
event doors: fetch the object, decode, run, store the result objects, and return the
outcome to publish. It knows nothing about HTTP, Kafka or CloudEvents.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from consumer import metrics
from consumer.audio import decode
from consumer.config import AudioLimits, EventSettings
from consumer.engine import Engine, EngineResult, JobOptions
from consumer.errors import AccessDeniedError, BusyError, ModelNotReadyError, PayloadTooLargeError, ServiceError
from consumer.events import AudioJobRequested, DiarizationCompleted, JobFailed, JobOutcome, JobProgressed
from consumer.formats import options_dict, result_document, to_rttm, rttm_uri
from consumer.storage import ObjectStore

log = logging.getLogger(__name__)

AudioProgress = Callable[[float, float], None]
"""Called with (fraction done, audio seconds) while a job runs."""


class JobHandler:
    """Runs jobs on one engine; safe to call from many threads.

    ``max_pending`` bounds how many jobs may wait for the model while one runs; one more
    is refused with ``BusyError`` (HTTP 503) instead of queueing without end. ``None``
    means no bound (a Kafka consumer feeds one job at a time anyway). ``store`` and
    ``allowed_buckets`` are needed by ``handle`` only.
    """

    def __init__(
        self,
        engine: Engine,
        limits: AudioLimits,
        *,
        max_pending: int | None = None,
        store: ObjectStore | None = None,
        allowed_buckets: frozenset[str] = frozenset(),
        events: EventSettings = EventSettings(),
        model_name: str = "",
    ) -> None:
        self.engine = engine
        self.limits = limits
        self.store = store
        self.allowed_buckets = allowed_buckets
        self.events = events
        self.model_name = model_name
        self._max_in_flight = None if max_pending is None else max_pending + 1
        self._in_flight = 0
        self._guard = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether jobs can run now."""
        return self.engine.ready

    # --- the synchronous door ------------------------------------------------------------

    def analyze(
        self,
        source: bytes | BinaryIO,
        options: JobOptions,
        *,
        job_id: str = "",
        progress: AudioProgress | None = None,
        reservation: Reservation | None = None,
    ) -> EngineResult:
        """Decode ``source`` and run the engine on it; blocks. Raises ``ServiceError`` subclasses.

        Takes a slot (or uses ``reservation``) and frees it when done.
        """
        if not self.engine.ready:
            raise ModelNotReadyError("the model is still loading; retry shortly")
        task = "diarization" if options.diarize else "vad"
        started = time.perf_counter()
        with reservation or self.reserve():
            try:
                audio = decode(source, self.limits)
                decoded = time.perf_counter()
                on_fraction = None if progress is None else (lambda f: progress(f, audio.duration))
                result = self.engine.run(audio.samples, audio.sample_rate, options, on_fraction)
            except ServiceError as exc:
                metrics.JOBS.labels(task, exc.code).inc()
                log.info(
                    "job rejected",
                    extra={"job_id": job_id, "task": task, "error_code": exc.code, "error": exc.message},
                )
                raise
        metrics.JOBS.labels(task, "completed").inc()
        metrics.AUDIO_SECONDS.labels(task).inc(result.duration)
        metrics.INFERENCE_SECONDS.labels(task).observe(result.inference_seconds)
        metrics.REAL_TIME_FACTOR.labels(task).observe(result.real_time_factor)
        log.info(
            "job completed",
            extra={
                "job_id": job_id,
                "task": task,
                "audio_seconds": round(result.duration, 3),
                "decode_seconds": round(decoded - started, 3),
                "inference_seconds": round(result.inference_seconds, 3),
                "real_time_factor": round(result.real_time_factor, 4),
                "num_speakers": result.num_speakers,
                "turns": len(result.turns),
                "speech_regions": len(result.speech),
            },
        )
        return result

    # --- the event doors -----------------------------------------------------------------

    def handle(
        self,
        request: AudioJobRequested,
        progress: Callable[[JobProgressed], None] | None = None,
        reservation: Reservation | None = None,
    ) -> JobOutcome:
        """Run one requested job to its outcome; blocks.

        Returns ``DiarizationCompleted`` (possibly reused from a stored result) or
        ``JobFailed`` for a permanent failure. Raises retryable ``ServiceError``s
        (storage or model unavailable, no free slot): the caller backs off and tries again.
        """
        started = time.perf_counter()
        try:
            with reservation or self.reserve() as held:
                outcome = self._handle(request, progress, held)
        except ServiceError as exc:
            if exc.retryable:
                log.warning("job will be retried", extra=_job_fields(request, started, error_code=exc.code, error=exc.message))
                raise
            log.info("job failed", extra=_job_fields(request, started, error_code=exc.code, error=exc.message))
            return JobFailed(request.input, request.object, exc.code, exc.message)
        except Exception as exc:  # a bug must not stop the consumer on this message forever
            log.exception("job crashed", extra=_job_fields(request, started))
            return JobFailed(request.input, request.object, "internal_error", f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, DiarizationCompleted):
            log.info("job done", extra=_job_fields(request, started, reused=outcome.document.get("reused", False)))
        return outcome

    def _handle(
        self,
        request: AudioJobRequested,
        progress: Callable[[JobProgressed], None] | None,
        reservation: Reservation,
    ) -> JobOutcome:
        if self.store is None:
            raise RuntimeError("JobHandler.handle needs an object store")
        if request.object.bucket not in self.allowed_buckets:
            raise AccessDeniedError(f"bucket {request.object.bucket!r} is not one this service reads")
        if not self.engine.ready:
            raise ModelNotReadyError("the model is still loading")
        obj = self.store.stat(request.object)
        if obj.size is not None and obj.size > self.limits.max_bytes:
            raise PayloadTooLargeError(f"the object is larger than {self.limits.max_bytes} bytes")
        request = dataclasses.replace(request, object=obj)
        digest = _options_digest(request.options, self.model_name)
        stored = self.store.find_result(obj, digest)
        if stored is not None:
            metrics.JOBS.labels("event", "reused").inc()
            return DiarizationCompleted(request, {**stored, "reused": True})

        throttle = _Throttle(self.events, request, progress)
        with self.store.open(obj, self.limits.max_bytes) as audio:
            result = self.analyze(
                audio, request.options, job_id=request.input.id, progress=throttle, reservation=reservation
            )
        keys = self.store.result_keys(obj)
        document = result_document(
            request.input, obj, request.options, result, self.model_name, self.store.settings.results_bucket, keys
        )
        self.store.write_result(obj, digest, document, to_rttm(result, rttm_uri(obj.key)))
        return DiarizationCompleted(request, document)

    def reserve(self) -> Reservation:
        """A slot for one job, held until released; raises ``BusyError`` when none is free.

        A door that must know a job is admitted before it answers (the Knative receiver's
        202) reserves first and hands the reservation to ``handle``.
        """
        with self._guard:
            if self._max_in_flight is not None and self._in_flight >= self._max_in_flight:
                raise BusyError(f"{self._in_flight} jobs are already running or queued; retry later")
            self._in_flight += 1
            metrics.JOBS_IN_FLIGHT.set(self._in_flight)
        return Reservation(self._release)

    def _release(self) -> None:
        with self._guard:
            self._in_flight -= 1
            metrics.JOBS_IN_FLIGHT.set(self._in_flight)


class Reservation:
    """One admitted job's slot; releasing it twice is harmless."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        """Free the slot (once)."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


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


def _options_digest(options: JobOptions, model: str) -> str:
    """Identifies what a stored result was computed with: the options and the model."""
    canonical = json.dumps({"options": options_dict(options), "model": model}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _job_fields(request: AudioJobRequested, started: float, **more: object) -> dict[str, object]:
    return {
        "event_id": request.input.id,
        "object": request.object.partition_key,
        "seconds": round(time.perf_counter() - started, 3),
        **more,
    }

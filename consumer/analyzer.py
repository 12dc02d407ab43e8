"""``Analyzer``: audio in, result out. The synchronous job, and the core every door shares.

It decodes the audio, runs the engine on it, and admits a bounded number of jobs at once.
It knows nothing about HTTP, Kafka, CloudEvents or object stores: the sync API calls it
with an upload, ``EventJob`` with an object it fetched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import IO

from consumer import metrics
from consumer.audio import decode
from consumer.config import AudioLimits, JobLimits
from consumer.deadline import JobWatch, Watches
from consumer.engine import Engine, EngineResult
from consumer.engine.identity import check_model, identify
from consumer.errors import BusyError, ModelNotReadyError, ServiceError
from consumer.memory import release_free_memory
from consumer.options import JobOptions

log = logging.getLogger(__name__)

AudioProgress = Callable[[float, float], None]
"""Called with (fraction done, audio seconds) while a job runs."""


class Analyzer:
    """Runs audio through one engine; safe to call from many threads.

    ``max_pending`` bounds how many jobs may wait for the model while one runs; one more
    is refused with ``BusyError`` (HTTP 503) instead of queueing without end. ``None``
    means no bound (a Kafka consumer feeds one job at a time anyway). Every job runs under
    a ``JobWatch`` (``consumer.deadline``) within ``job_limits``; ``watches`` are the ones
    running now, for the liveness probe.
    """

    def __init__(
        self,
        engine: Engine,
        limits: AudioLimits,
        *,
        max_pending: int | None = None,
        job_limits: JobLimits = JobLimits(),
    ) -> None:
        self.engine = engine
        self.limits = limits
        self.job_limits = job_limits
        self.watches = Watches()
        self._max_in_flight = None if max_pending is None else max_pending + 1
        self._in_flight = 0
        self._guard = threading.Lock()
        self._engine_turn = threading.Lock()  # jobs queue here, their watches paused

    @property
    def ready(self) -> bool:
        """Whether jobs can run now."""
        return self.engine.ready

    def analyze(
        self,
        source: bytes | IO[bytes],
        options: JobOptions,
        *,
        job_id: str = "",
        progress: AudioProgress | None = None,
        reservation: Reservation | None = None,
        limits: AudioLimits | None = None,
        watch: JobWatch | None = None,
    ) -> EngineResult:
        """Decode ``source`` and run the engine on it; blocks. Raises ``ServiceError`` subclasses.

        Takes a slot (or uses ``reservation``) and frees it when done. Speakers matching the
        options' voiceprints are named after them (``consumer.engine.identity``). ``limits``
        replaces the analyzer's own audio limits for this job (enrolment clips are shorter).
        Every stage beats ``watch``; without one, the job gets its own, which counts as
        running in ``watches`` meanwhile.
        """
        if not self.engine.ready:
            # a failed load or a broken engine says so; otherwise it is still loading
            raise self.engine.error or ModelNotReadyError("the model is still loading; retry shortly")
        task = "diarization" if options.diarize else "vad"
        if watch is None:  # a job of its own: it counts among the running ones while here
            watch = JobWatch(self.job_limits)
            running: AbstractContextManager[object] = self.watches.running(watch)
        else:  # whoever made the watch registered it (EventJob)
            running = nullcontext()
        with reservation or self.reserve(), running:
            try:
                result = self._run(source, options, progress, limits or self.limits, watch)
            except ServiceError as exc:
                metrics.JOBS.labels(task, exc.code).inc()
                log.info(
                    "job rejected",
                    extra={"job_id": job_id, "task": task, "error_code": exc.code, "error": exc.message},
                )
                raise
            finally:  # the job's samples and working memory are free now (consumer.memory)
                release_free_memory()
        metrics.JOBS.labels(task, "completed").inc()
        metrics.AUDIO_SECONDS.labels(task).inc(result.duration)
        metrics.INFERENCE_SECONDS.labels(task).observe(result.inference_seconds)
        metrics.REAL_TIME_FACTOR.labels(task).observe(result.real_time_factor)
        stages = result.stages.rounded()
        for stage, seconds in stages.items():
            metrics.STAGE_SECONDS.labels(task, stage).inc(seconds)
        log.info(
            "job completed",
            extra={
                "job_id": job_id,
                "task": task,
                "audio_seconds": round(result.duration, 3),
                "inference_seconds": round(result.inference_seconds, 3),
                "stage_seconds": stages,
                "real_time_factor": round(result.real_time_factor, 4),
                "num_speakers": result.num_speakers,
                "turns": len(result.turns),
                "speech_regions": len(result.speech),
            },
        )
        return result

    def _run(
        self,
        source: bytes | IO[bytes],
        options: JobOptions,
        progress: AudioProgress | None,
        limits: AudioLimits,
        watch: JobWatch,
    ) -> EngineResult:
        """Decode, run the engine, name known speakers; the decoded samples live only this long."""
        started = time.perf_counter()
        check_model(options.voiceprints, self.engine.embedding_model)
        audio = decode(source, limits, options.audio_stream, beat=watch.beat)
        with audio.samples:  # the decoded audio's file is deleted once the engine is done with it
            watch.set_duration(audio.duration)
            decoded = time.perf_counter()

            def on_fraction(fraction: float) -> None:
                watch.beat()
                if progress is not None:
                    progress(fraction, audio.duration)

            with watch.waiting():  # another job may hold the engine: its watch counts, not this one's
                self._engine_turn.acquire()
            try:
                ran = self.engine.run(audio.samples, audio.sample_rate, options, on_fraction)
            finally:
                self._engine_turn.release()
        result = identify(ran, options.voiceprints)
        return replace(result, stages=replace(result.stages, decode=decoded - started))

    def reserve(self) -> Reservation:
        """A slot for one job, held until released; raises ``BusyError`` when none is free.

        A door that must know a job is admitted before it answers (the Knative receiver's
        202) reserves first and hands the reservation on.
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

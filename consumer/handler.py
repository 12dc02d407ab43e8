"""``JobHandler``: the one place a job is done, whichever door it came through.

It decodes the audio, runs the engine with admission control, and records metrics and a
log line per job. It knows nothing about HTTP, Kafka or CloudEvents.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

from consumer import metrics
from consumer.audio import decode
from consumer.config import AudioLimits
from consumer.engine import Engine, EngineResult, JobOptions, ProgressCallback
from consumer.errors import BusyError, ModelNotReadyError, ServiceError

log = logging.getLogger(__name__)


class JobHandler:
    """Runs jobs on one engine; safe to call from many threads.

    ``max_pending`` bounds how many jobs may wait for the model while one runs; one more
    is refused with ``BusyError`` (HTTP 503) instead of queueing without end. ``None``
    means no bound (a Kafka consumer feeds one job at a time anyway).
    """

    def __init__(self, engine: Engine, limits: AudioLimits, max_pending: int | None = None) -> None:
        self.engine = engine
        self.limits = limits
        self._max_in_flight = None if max_pending is None else max_pending + 1
        self._in_flight = 0
        self._guard = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether jobs can run now."""
        return self.engine.ready

    def analyze(
        self,
        source: bytes | BinaryIO,
        options: JobOptions,
        *,
        job_id: str = "",
        progress: ProgressCallback | None = None,
    ) -> EngineResult:
        """Decode ``source`` and run the engine on it; blocks. Raises ``ServiceError`` subclasses."""
        if not self.engine.ready:
            raise ModelNotReadyError("the model is still loading; retry shortly")
        task = "diarization" if options.diarize else "vad"
        started = time.perf_counter()
        with self._admitted():
            try:
                audio = decode(source, self.limits)
                decoded = time.perf_counter()
                result = self.engine.run(audio.samples, audio.sample_rate, options, progress)
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

    @contextlib.contextmanager
    def _admitted(self) -> Iterator[None]:
        with self._guard:
            if self._max_in_flight is not None and self._in_flight >= self._max_in_flight:
                raise BusyError(f"{self._in_flight} jobs are already running or queued; retry later")
            self._in_flight += 1
            metrics.JOBS_IN_FLIGHT.set(self._in_flight)
        try:
            yield
        finally:
            with self._guard:
                self._in_flight -= 1
                metrics.JOBS_IN_FLIGHT.set(self._in_flight)

"""The real Kafka consumer whose real embedding model raises once armed: a fault for tests.

Run instead of ``consumer.kafka.worker`` (``start_consumer(..., module=...)`` in the
integration tier), with the consumer's usual environment plus:

- ``FAULT_EMBEDDING_CALL`` (required, >= 1): the Nth call of
  ``CAMPPlusEmbedding.chunk_frames`` after the model has loaded and warmed up raises
  ``RuntimeError``; calls are counted across jobs, so N picks a point inside a job;
- ``FAULT_TIMES`` (default 1): how many calls from the Nth on raise; later calls run
  the model as usual, so the jobs after the faulty one complete. A job fails at its first
  raising call, so each fault fails one input: ``ENGINE_MAX_CONSECUTIVE_FAILURES`` (3) of
  them in a row break the engine, and the consumer exits non-zero.

The fault is armed only after ``PyannoteEngine.load`` returns: the warm-up job at load
must succeed, or the consumer would never become ready. Everything else is the real
consumer, ``consumer.kafka.worker.main``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from consumer.engine import campplus
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.kafka import worker as kafka_worker

FAULT_MESSAGE = "injected fault in CAMPPlusEmbedding.chunk_frames"
log = logging.getLogger("tests.faulty_consumer")


def _setting(name: str, default: str | None = None) -> int:
    raw = os.environ.get(name, default)
    if raw is None or not raw.strip().isdigit() or int(raw) < 1:
        raise SystemExit(f"faulty_consumer: {name} must be a whole number >= 1, got {raw!r}")
    return int(raw)


def arm(call: int, times: int) -> None:
    """Make calls ``call`` .. ``call + times - 1`` of ``chunk_frames`` (from now on) raise."""
    original = campplus.CAMPPlusEmbedding.chunk_frames
    lock = threading.Lock()
    calls = 0

    def chunk_frames(self: Any, waveforms: Any) -> Any:
        nonlocal calls
        with lock:
            calls += 1
            number = calls
        if call <= number < call + times:
            log.warning("raising the injected fault", extra={"fault_call": number})
            raise RuntimeError(f"{FAULT_MESSAGE} (call {number})")
        return original(self, waveforms)

    campplus.CAMPPlusEmbedding.chunk_frames = chunk_frames  # type: ignore[method-assign]
    log.warning("model fault armed", extra={"fault_call": call, "fault_times": times})


def main() -> int:
    call, times = _setting("FAULT_EMBEDDING_CALL"), _setting("FAULT_TIMES", "1")
    load = PyannoteEngine.load

    def load_then_arm(self: PyannoteEngine) -> None:
        load(self)  # loads and warms up with the real, unpatched model
        arm(call, times)

    PyannoteEngine.load = load_then_arm  # type: ignore[method-assign]
    return kafka_worker.main([])


if __name__ == "__main__":
    raise SystemExit(main())

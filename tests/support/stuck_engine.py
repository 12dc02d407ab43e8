"""The real consumer or shim whose real engine never returns on one input: a stuck job, for tests.

Run instead of ``consumer.kafka.worker`` or ``http_shim.server`` (``STUCK_DOOR`` = ``consumer``
or ``shim``) with the usual environment plus ``STUCK_ON_SECONDS``: a job whose decoded audio
lasts that long (to the millisecond) blocks inside the engine for ever, as a CUDA call does
after a driver fault; every other job runs the real model as usual. Nothing in the job
thread can notice; only the job's deadline (``consumer.deadline``) can.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.kafka import worker as kafka_worker
from http_shim import server

log = logging.getLogger("tests.stuck_engine")


def main() -> int:
    door, seconds = os.environ["STUCK_DOOR"], float(os.environ["STUCK_ON_SECONDS"])
    if door not in ("consumer", "shim"):
        raise SystemExit(f"stuck_engine: STUCK_DOOR must be consumer or shim, got {door!r}")
    run, never = PyannoteEngine.run, threading.Event()

    def run_or_stick(self: PyannoteEngine, samples: Any, sample_rate: int, *args: Any, **kwargs: Any) -> Any:
        if abs(len(samples) / sample_rate - seconds) < 0.001:
            log.warning("stuck in the engine for ever", extra={"audio_seconds": seconds})
            never.wait()
        return run(self, samples, sample_rate, *args, **kwargs)

    PyannoteEngine.run = run_or_stick  # type: ignore[method-assign]
    return kafka_worker.main([]) if door == "consumer" else server.main([])


if __name__ == "__main__":
    raise SystemExit(main())

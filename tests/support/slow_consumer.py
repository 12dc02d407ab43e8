"""The real Kafka consumer whose embedding model takes longer: a long job on any machine.

Run instead of ``consumer.kafka.worker`` (``start_consumer(..., module=...)``) with
``SLOW_EMBEDDING_SECONDS`` (> 0): after the model has loaded and warmed up, each call of
``CAMPPlusEmbedding.chunk_frames`` (one per 60 s region of audio) sleeps that long before
it runs. A test that needs a job to still be running while something else happens (a
consumer joining the group) then does not depend on how fast the machine is. The results
are the real model's.
"""

from __future__ import annotations

import os
import time
from typing import Any

from consumer.engine import campplus
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.kafka import worker as kafka_worker


def main() -> int:
    delay = float(os.environ["SLOW_EMBEDDING_SECONDS"])
    if delay <= 0:
        raise SystemExit(f"slow_consumer: SLOW_EMBEDDING_SECONDS must be > 0, got {delay}")
    load, original = PyannoteEngine.load, campplus.CAMPPlusEmbedding.chunk_frames

    def slow_chunk_frames(self: Any, waveforms: Any) -> Any:
        time.sleep(delay)
        return original(self, waveforms)

    def load_then_slow_down(self: PyannoteEngine) -> None:
        load(self)  # the warm-up at load runs at full speed
        campplus.CAMPPlusEmbedding.chunk_frames = slow_chunk_frames  # type: ignore[method-assign]

    PyannoteEngine.load = load_then_slow_down  # type: ignore[method-assign]
    return kafka_worker.main([])


if __name__ == "__main__":
    raise SystemExit(main())

"""One engine job in this process, as the consumer runs it, for tests that need a fresh process.

    python -m tests.support.engine_job AUDIO_FILE

Applies the service's allocator policy, loads the engine from the environment's settings,
decodes the file to a ``SampleFile`` and diarizes it with default options; prints one JSON
line: peak RSS (MiB, this process's high-water mark, model included), seconds, and the turns.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from consumer.audio import decode
from consumer.config import Settings
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.memory import tune_allocator
from consumer.options import JobOptions


def main(path: str) -> int:
    tune_allocator()
    settings = Settings.from_env(os.environ)
    engine = PyannoteEngine(settings.engine)
    engine.load()
    started = time.perf_counter()
    with open(path, "rb") as stream, decode(stream, settings.audio).samples as samples:
        result = engine.run(samples, samples.sample_rate, JobOptions())
    print(
        json.dumps(
            {
                "audio_seconds": result.duration,
                "seconds": round(time.perf_counter() - started, 2),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "stages": result.stages.rounded(),
                "turns": [(t.start, t.end, t.speaker) for t in result.turns],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))

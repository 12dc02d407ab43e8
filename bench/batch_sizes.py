#!/usr/bin/env python3
"""Engine time for segmentation and embedding batch sizes on this machine's device.

Runs the engine on a generated conversation (default 120 s) once per (segmentation,
embedding) batch size pair, after a warm-up, and prints the seconds and real-time
factor of each, fastest first. The defaults in ``consumer.engine.pyannote_engine``
(``BATCH_SIZES``) come from this script.

    python bench/batch_sizes.py [--seconds 120] [--segmentation 1 8 32] [--embedding 1 4 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import soundfile as sf

from consumer.config import Settings
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.options import JobOptions
from tests.support.conversation import conversation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--segmentation", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--embedding", type=int, nargs="+", default=[1, 2, 4, 8, 32])
    args = parser.parse_args()

    samples, rate = sf.read(str(conversation(3, args.seconds, seed=9).wav), dtype="float32")
    engine = PyannoteEngine(Settings.from_env(os.environ).engine)
    engine.load()
    pipeline = engine._pipeline
    rows = []
    for segmentation in args.segmentation:
        for embedding in args.embedding:
            pipeline.segmentation_batch_size = segmentation
            pipeline.embedding_batch_size = embedding
            engine.run(samples[: 10 * rate], rate, JobOptions())  # warm-up at these sizes
            started = time.perf_counter()
            engine.run(samples, rate, JobOptions())
            elapsed = time.perf_counter() - started
            rows.append((elapsed, segmentation, embedding))
            print(
                f"segmentation {segmentation:3d}  embedding {embedding:3d}: {elapsed:6.2f} s  RTF {elapsed / (len(samples) / rate):.3f}",
                flush=True,
            )
    print(f"\ndevice {engine.device}; fastest first:")
    for elapsed, segmentation, embedding in sorted(rows):
        print(f"  segmentation {segmentation:3d}  embedding {embedding:3d}: {elapsed:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""How far apart a job's beats come: the evidence behind ``JOB_STALL_SECONDS`` (consumer.deadline).

A job that makes no progress for ``JOB_STALL_SECONDS`` is taken for stuck and its process
ends. This runs real jobs through the ``Analyzer`` (decoding, every engine stage, as the
service runs them) on generated conversations, records the time of every beat of the job's
``JobWatch``, and prints the longest gap, the 99th percentile and where the longest fell
(the stage reported just before it), with the real-time factor. Run it on an idle machine and
beside a CPU-heavy process (``--load N`` starts N busy-looping processes) to see the margin.

    python bench/job_beats.py [--minutes 10 60] [--load 0]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class RecordingWatch:
    """A ``JobWatch`` that keeps the time of every beat (and the fraction reported before it)."""

    def __init__(self, limits: object) -> None:
        from consumer.deadline import JobWatch

        self.watch = JobWatch(limits)  # type: ignore[arg-type]
        self.beats: list[float] = [time.monotonic()]

    def __getattr__(self, name: str) -> object:
        return getattr(self.watch, name)

    def beat(self) -> None:
        self.beats.append(time.monotonic())
        self.watch.beat()

    def set_duration(self, seconds: float) -> None:
        self.beats.append(time.monotonic())
        self.watch.set_duration(seconds)


def _busy() -> None:
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes beside the jobs")
    args = parser.parse_args()

    from consumer.analyzer import Analyzer
    from consumer.config import Settings
    from consumer.engine.pyannote_engine import PyannoteEngine
    from consumer.options import JobOptions
    from tests.support.conversation import conversation

    settings = Settings.from_env(os.environ)
    engine = PyannoteEngine(settings.engine)
    engine.load()
    analyzer = Analyzer(engine, settings.audio, job_limits=settings.jobs)
    load = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for process in load:
        process.start()
    print(f"JOB_STALL_SECONDS={settings.jobs.stall_seconds:g}; {args.load} busy processes beside the jobs")
    print(f"{'audio':>8} {'beats':>7} {'longest gap':>12} {'p99 gap':>8} {'RTF':>7}")
    try:
        for minutes in args.minutes:
            wav = conversation(num_speakers=4, duration=minutes * 60, seed=13).wav
            watch = RecordingWatch(settings.jobs)
            started = time.monotonic()
            with wav.open("rb") as audio:
                analyzer.analyze(audio, JobOptions(), watch=watch)  # type: ignore[arg-type]
            seconds = time.monotonic() - started
            watch.beats.append(time.monotonic())
            gaps = sorted(b - a for a, b in zip(watch.beats, watch.beats[1:], strict=False))
            p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))]
            print(
                f"{minutes:>6.0f} m {len(watch.beats):>7} {gaps[-1]:>10.2f} s {p99:>6.2f} s "
                f"{seconds / (minutes * 60):>7.4f}",
                flush=True,
            )
    finally:
        for process in load:
            process.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

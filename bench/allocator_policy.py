#!/usr/bin/env python3
"""The engine's speed and peak memory under three glibc allocator policies, as the service runs it.

Each policy runs in a fresh process: the model loads in one thread (as ``consumer.wiring``
loads it in the background), then one job runs in another thread (as the Kafka worker and
the HTTP doors run jobs) on a generated 10-minute 4-voice conversation.

- ``glibc``: the C library's defaults (mmap threshold rising to at most 32 MiB, one arena per thread);
- ``mmap-1mib``: every block of 1 MiB or more in its own mapping (the service's previous policy);
- ``service``: ``consumer.memory.tune_allocator`` (one heap, blocks up to 1 GiB reused), and
  ``release_free_memory`` after the job.

    python bench/allocator_policy.py [--minutes 10] [--policies glibc mmap-1mib service]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

POLICIES = ("glibc", "mmap-1mib", "service")


def _apply(policy: str) -> None:
    if policy == "mmap-1mib":
        assert ctypes.CDLL(None).mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD
    elif policy == "service":
        from consumer.memory import tune_allocator

        assert tune_allocator()


def _measure(policy: str, wav: Path) -> dict:
    """Runs inside the subprocess."""
    _apply(policy)
    import soundfile as sf

    from consumer.config import Settings
    from consumer.engine.pyannote_engine import PyannoteEngine
    from consumer.memory import release_free_memory
    from consumer.options import JobOptions

    engine = PyannoteEngine(Settings.from_env(os.environ).engine)
    loader = threading.Thread(target=engine.load)
    loader.start()
    loader.join()
    samples, rate = sf.read(str(wav), dtype="float32")
    row: dict = {}

    def job() -> None:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        result = engine.run(samples, rate, JobOptions())
        seconds = time.perf_counter() - started
        if policy == "service":
            release_free_memory()
        after = resource.getrusage(resource.RUSAGE_SELF)
        row.update(
            seconds=round(seconds, 1),
            rtf=round(seconds / (len(samples) / rate), 4),
            user_s=round(after.ru_utime - before.ru_utime, 1),
            system_s=round(after.ru_stime - before.ru_stime, 1),
            page_faults=after.ru_minflt - before.ru_minflt,
            speakers=result.num_speakers,
        )

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"policy": policy, **row}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--one", nargs=2, metavar=("POLICY", "WAV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one[0], Path(args.one[1]))))
        return 0
    from tests.support.conversation import conversation

    wav = conversation(num_speakers=4, duration=args.minutes * 60, seed=7).wav
    # an operator's MALLOC_* settings would override every policy: run without them
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env["PYTHONPATH"] = str(REPO)
    print(f"{'policy':10s} {'s':>6s} {'RTF':>7s} {'user s':>7s} {'system s':>8s} {'page faults':>11s} {'peak MiB':>8s}")
    for policy in args.policies:
        output = subprocess.run(
            [sys.executable, __file__, "--one", policy, str(wav)], check=True, capture_output=True, text=True, env=env
        )
        r = json.loads(output.stdout.strip().splitlines()[-1])
        print(
            f"{policy:10s} {r['seconds']:6.1f} {r['rtf']:7.4f} {r['user_s']:7.1f} {r['system_s']:8.1f}"
            f" {r['page_faults']:11d} {r['peak_rss_mib']:8d}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

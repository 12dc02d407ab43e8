#!/usr/bin/env python3
"""Long-audio soak: a generated 2-hour conversation through the Kafka path.

Starts a local stack (instance ``soak``) and one consumer, uploads a generated conversation
(default 7200 s, 4 voices) into the bucket and waits for its result event. Prints the
processing time and real-time factor, the progress events seen, the consumer's peak
memory (VmHWM) and resident memory while it ran, whether any rebalance happened, and the
result's speaker count and DER against the generated reference.

    python bench/soak_long_audio.py [--seconds 7200] [--speakers 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.conversation import conversation  # noqa: E402
from tests.support.processes import free_port, start_module, stop, wait_http  # noqa: E402
from tests.support.stack import Stack, TopicReader  # noqa: E402


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _metric(probe: str, name: str) -> float:
    import requests

    text = requests.get(f"{probe}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=7200)
    parser.add_argument("--speakers", type=int, default=4)
    args = parser.parse_args()

    print(f"generating a {args.seconds:.0f} s conversation of {args.speakers} voices (cached) ...", flush=True)
    talk = conversation(args.speakers, args.seconds, seed=2024)
    stack = Stack.start("soak")
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"soak-consumer-{uuid.uuid4().hex[:6]}.log"
    consumer = start_module(
        "consumer.kafka.worker",
        {**stack.env, "CONSUMER_PROBE_PORT": str(port), "KAFKA_GROUP_ID": "soak", "PROGRESS_INTERVAL_SECONDS": "30"},
        log,
    )
    probe = f"http://127.0.0.1:{port}"
    reader = TopicReader(stack.bootstrap, stack.env["KAFKA_RESULTS_TOPIC"])
    rss: list[float] = []
    finished = threading.Event()
    try:
        wait_http(f"{probe}/ready", consumer, timeout=300, log=log)
        idle_rss = _status(consumer.pid, "VmRSS")

        def sample_memory() -> None:
            while not finished.wait(5):
                rss.append(_status(consumer.pid, "VmRSS"))

        threading.Thread(target=sample_memory, daemon=True).start()
        key = f"soak/{uuid.uuid4().hex[:8]}/long.wav"
        stack.minio().fput_object("audio", key, str(talk.wav))
        started = time.monotonic()
        subject = f"audio/{key}"
        result = None
        while result is None and time.monotonic() - started < 6 * 3600:
            reader.drain(2)
            result = next((e for e in reader.events if e.subject == subject and not e.type.endswith(".progress")), None)
        elapsed = time.monotonic() - started
        finished.set()
        if result is None:
            print("no result within 6 hours")
            return 1
        progress = [e.data["fraction"] for e in reader.events if e.subject == subject and e.type.endswith(".progress")]
        revoked = _metric(probe, 'kafka_rebalances_total{kind="revoked"}') + _metric(
            probe, 'kafka_rebalances_total{kind="lost"}'
        )
        peak = _status(consumer.pid, "VmHWM")
    finally:
        finished.set()
        reader.close()
        stop(consumer)
        stack.destroy()

    print(
        f"\naudio {talk.duration:.0f} s ({talk.duration / 3600:.2f} h), result {result.type} after {elapsed:.0f} s: "
        f"RTF {elapsed / talk.duration:.3f} (upload to result event)"
    )
    print(
        f"progress events: {len(progress)}, fractions {progress[0]:.2f} .. {progress[-1]:.2f}"
        if progress
        else "no progress events"
    )
    print(
        f"consumer memory: idle {idle_rss:.0f} MiB, while running max {max(rss):.0f} MiB, peak (VmHWM) {peak:.0f} MiB"
    )
    print(f"rebalances (revoked or lost): {revoked:.0f}")
    if result.type.endswith(".completed"):
        from pyannote.core import Annotation, Segment
        from pyannote.metrics.diarization import DiarizationErrorRate

        reference, hypothesis = Annotation(), Annotation()
        for i, turn in enumerate(talk.turns):
            reference[Segment(turn.start, turn.end), i] = turn.speaker
        for i, turn in enumerate(result.data["segments"]):
            hypothesis[Segment(turn["start"], turn["end"]), i] = turn["speaker"]
        der = DiarizationErrorRate(collar=0.5)(reference, hypothesis)
        print(f"speakers found {result.data['num_speakers']} of {len(talk.speakers)}; DER {der:.2%} (collar 0.5 s)")
    return 0 if result.type.endswith(".completed") and revoked == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Throughput and latency of the event pipeline: uploads through the real stack and model.

Starts a local stack (instance ``bench``) and one consumer, uploads N small recordings
(``--seconds`` of pyannote's sample from where its speech starts, 6.5 s, two speakers;
each under its own key) into the bucket as
fast as MinIO takes them, and reads the result events. Prints:

- events per second, from the first upload to the last result event;
- latency from each upload to its result event (p50, p95, max);
- transport overhead per event: the consumer's wall time per event minus the model's
  inference time, as a share of the wall time (everything but inference: notification,
  Kafka, MinIO download, decoding, result objects, publishing, committing).

    python bench/pipeline_throughput.py [--uploads 200] [--seconds 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402

from tests.support.processes import free_port, start_module, stop, wait_http  # noqa: E402
from tests.support.stack import Stack, TopicReader  # noqa: E402


def _clip(seconds: float) -> bytes:
    import pyannote.audio

    samples, rate = sf.read(str(Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"), dtype="float32")
    buffer = io.BytesIO()
    start = int(6.5 * rate)  # the sample's first seconds are silence
    sf.write(buffer, samples[start : start + int(seconds * rate)], rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length of each upload (at most 23)")
    args = parser.parse_args()

    stack = Stack.start("bench")
    log = Path(tempfile.gettempdir()) / f"bench-consumer-{uuid.uuid4().hex[:6]}.log"
    port = free_port()
    consumer = start_module(
        "consumer.kafka.worker", {**stack.env, "CONSUMER_PROBE_PORT": str(port), "KAFKA_GROUP_ID": "bench"}, log
    )
    reader = TopicReader(stack.bootstrap, stack.env["KAFKA_RESULTS_TOPIC"])
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", consumer, timeout=300, log=log)
        clip = _clip(args.seconds)
        run = uuid.uuid4().hex[:6]
        uploaded: dict[str, float] = {}
        first = time.monotonic()
        for i in range(args.uploads):
            key = f"bench/{run}/{i:04d}.wav"
            stack.upload(key, clip)
            uploaded[f"audio/{key}"] = time.monotonic()
        upload_seconds = time.monotonic() - first
        arrived: dict[str, float] = {}
        inference: dict[str, float] = {}
        speakers: Counter[int] = Counter()
        deadline = time.monotonic() + 60 + args.uploads * 10
        while len(arrived) < args.uploads and time.monotonic() < deadline:
            reader.drain(0.5)
            for event in reader.events:
                if event.subject in uploaded and event.subject not in arrived and not event.type.endswith(".progress"):
                    arrived[event.subject] = time.monotonic()
                    inference[event.subject] = event.data.get("inference_seconds", 0.0)
                    speakers[event.data.get("num_speakers", -1)] += 1
                    if event.type.endswith(".failed"):
                        print(f"failed: {event.subject}: {event.data['error']}")
        last = max(arrived.values())
    finally:
        reader.close()
        stop(consumer)
        stack.destroy()

    latencies = sorted(arrived[k] - uploaded[k] for k in arrived)
    total = last - first
    per_event = total / len(arrived)
    mean_inference = statistics.mean(inference.values())

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    print(
        f"{len(arrived)}/{args.uploads} results for {args.seconds:.0f}-second uploads "
        f"(uploads took {upload_seconds:.1f} s)"
    )
    print(f"speakers found per job: {dict(speakers)}")
    print(f"throughput: {len(arrived) / total:.2f} events/s ({per_event * 1000:.0f} ms per event, one consumer)")
    print(
        f"latency upload -> result event: p50 {quantile(0.5):.1f} s, p95 {quantile(0.95):.1f} s, max {latencies[-1]:.1f} s"
        " (includes queueing behind earlier uploads)"
    )
    print(
        f"model time per event {mean_inference * 1000:.0f} ms; transport overhead "
        f"{(per_event - mean_inference) * 1000:.0f} ms = {(per_event - mean_inference) / per_event:.1%} of the job time"
    )
    return 0 if len(arrived) == args.uploads else 1


if __name__ == "__main__":
    raise SystemExit(main())

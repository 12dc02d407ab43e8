"""Load: a burst of uploads through two consumers, and concurrent pushes to the receiver."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest
import requests
import soundfile as sf

from tests.support.credentials import SENDER_AUTH

pytestmark = pytest.mark.integration
UPLOADS = 500


def _rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def _speech_clip(sample: Path, seconds: float) -> bytes:
    samples, rate = sf.read(str(sample), dtype="float32")
    start = int(6.5 * rate)  # where the sample's speech starts
    buffer = io.BytesIO()
    sf.write(buffer, samples[start : start + int(seconds * rate)], rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def test_a_burst_of_uploads_splits_across_two_consumers_with_flat_memory(stack, start_consumer, reader, sample):
    topics = stack.topics("load")
    group = f"it-load-{uuid.uuid4().hex[:6]}"
    stack.move_group_to_end(group, stack.env["KAFKA_INPUT_TOPIC"])  # MinIO notifies the shared topic
    env = {
        "KAFKA_RESULTS_TOPIC": topics["KAFKA_RESULTS_TOPIC"],
        "KAFKA_DLQ_TOPIC": topics["KAFKA_DLQ_TOPIC"],
        "TORCH_NUM_THREADS": "1",  # two consumers on two cores
    }
    consumers = [start_consumer(env, group, name=f"load-{i}") for i in range(2)]
    clip = _speech_clip(sample[0], 4.0)
    run = uuid.uuid4().hex[:8]
    keys = [f"load/{run}/{i:04d}.wav" for i in range(UPLOADS)]
    samples: dict[int, list[float]] = {c.process.pid: [] for c in consumers}
    done = threading.Event()

    def watch_memory() -> None:
        while not done.wait(1.0):
            for pid in samples:
                samples[pid].append(_rss_mib(pid))

    watcher = threading.Thread(target=watch_memory, daemon=True)
    watcher.start()
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: stack.upload(key, clip), keys))
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    wanted = {f"audio/{key}" for key in keys}

    def all_answered(events) -> bool:
        return wanted <= {e.subject for e in events if not e.type.endswith(".progress")}

    events = results.wait_for(all_answered, 1800, f"{UPLOADS} results")
    elapsed = time.monotonic() - started
    done.set()
    watcher.join()

    by_input: dict[str, set[str]] = {}
    for event in events:
        if event.subject in wanted:
            assert event.type == "dev.diarization.job.completed", event.data
            by_input.setdefault(event.data["input"]["id"], set()).add(event.id)
    assert len(by_input) == UPLOADS and all(len(ids) == 1 for ids in by_input.values())
    shares = [c.metric('diarization_jobs_total{outcome="completed",task="diarization"}') for c in consumers]
    peaks = [_rss_mib(c.process.pid, "VmHWM") for c in consumers]
    print(
        f"\n{UPLOADS} uploads in {elapsed:.0f} s ({UPLOADS / elapsed:.1f}/s); jobs per consumer {shares}; "
        f"peak RSS per consumer {[round(p) for p in peaks]} MiB"
    )
    assert sum(shares) >= UPLOADS and all(share >= 0.2 * UPLOADS for share in shares), shares
    for pid, series in samples.items():
        # flat: after the first fifth of the run, resident memory no longer grows
        settled = series[len(series) // 5]
        assert max(series[len(series) // 5 :]) < settled * 1.25 + 100, f"{pid}: {settled:.0f} -> {max(series):.0f} MiB"


def test_receiver_sheds_concurrent_pushes_instead_of_sharing_the_model(stack, start_shim, sample, tmp_path):
    base = start_shim(MAX_QUEUED_JOBS="1", HTTP_THREADS="8")
    key = f"load/{uuid.uuid4().hex[:8]}/sample.wav"
    stack.upload(key, sample[0].read_bytes())

    def push(i: int) -> int:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": f"burst-{i}",
            "ce-source": "/load",
            "ce-type": "dev.diarization.audio.uploaded",
            "Content-Type": "application/json",
            **SENDER_AUTH,
        }
        # a distinct option per event, so that none is answered from another's stored result
        data = {"bucket": "audio", "key": key, "options": {"max_speakers": 2 + i}}
        return requests.post(f"{base}/", data=json.dumps(data), headers=headers, timeout=600).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(push, range(8)))
    print(f"\n8 concurrent pushes: {sorted(statuses)}")
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 1 and statuses.count(200) >= 2
    # the jobs that ran never overlapped on the model
    lines = [
        json.loads(line)
        for path in tmp_path.glob("shim-*.log")
        for line in path.read_text().splitlines()
        if line.startswith("{")
    ]
    runs = sorted(
        (
            datetime.fromisoformat(line["time"]).timestamp() - line["inference_seconds"],
            datetime.fromisoformat(line["time"]).timestamp(),
        )
        for line in lines
        if line.get("message") == "job completed" and str(line.get("job_id", "")).startswith("burst-")
    )
    assert len(runs) == statuses.count(200)
    assert all(end <= next_start + 0.05 for (_, end), (next_start, _) in pairwise(runs)), runs

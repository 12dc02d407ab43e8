"""Never stuck: a job that never returns ends its process, and a store that never answers stalls nothing.

At the deployed defaults (``JOB_STALL_SECONDS``, ``MAX_ATTEMPTS``, the store client's timeouts),
with the real model; the stuck job is the real engine blocked for ever on one input
(``tests.support.stuck_engine``), as a CUDA call is after a driver fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid

import pytest
import requests
import soundfile as sf

from consumer.config import JobLimits, KafkaSettings
from consumer.kafka.worker import EXIT_JOB_OVERDUE
from tests.support.audio_bytes import encode
from tests.support.conversation import conversation
from tests.support.credentials import API_AUTH
from tests.support.faults import S3Proxy
from tests.support.hostile import children
from tests.support.processes import free_port, shim_env, start_module, wait_http
from tests.support.stack import cloudevent_headers, results_for

pytestmark = pytest.mark.integration

STALL = JobLimits().stall_seconds  # the default a deployment runs with
STUCK_SECONDS = 12.345  # the audio length the stuck engine never returns on


@pytest.fixture(scope="module")
def clips(sample) -> dict[str, bytes]:
    """Cuts of pyannote's sample: the one the engine sticks on, and two it diarizes."""
    samples, rate = sf.read(sample[0], dtype="float32")
    assert rate == 16_000
    return {
        "stuck": encode(samples[: round(STUCK_SECONDS * rate)]),
        "first": encode(samples[: 10 * rate]),
        "second": encode(samples[5 * rate : 25 * rate]),
    }


def _send(stack, topic: str, name: str, audio: bytes) -> str:
    """Upload ``audio`` and publish its event, keyed alike: every input lands in one partition."""
    key = f"deadline/{uuid.uuid4().hex[:8]}/{name}.wav"
    stack.upload(key, audio)
    event_id = f"{name}-{uuid.uuid4().hex[:8]}"
    data = json.dumps({"bucket": stack.env["S3_UPLOAD_BUCKET"], "key": key}).encode()
    stack.produce(topic, data, b"one-partition", cloudevent_headers(event_id))
    return event_id


def test_a_stuck_job_ends_its_consumer_until_the_input_is_answered_too_many_attempts(
    stack, start_consumer, reader, clips
):
    topics = stack.topics("stuck")
    group = f"it-stuck-{uuid.uuid4().hex[:6]}"
    env = {
        **topics,
        "STUCK_DOOR": "consumer",
        "STUCK_ON_SECONDS": str(STUCK_SECONDS),
        # as deployed: a restarted container rejoins as its pod (knative/kafka-consumer)
        "KAFKA_GROUP_INSTANCE_ID": f"{group}-pod",
    }
    ids = {name: _send(stack, topics["KAFKA_INPUT_TOPIC"], name, clips[name]) for name in ("stuck", "first", "second")}
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    exits = []
    for _ in range(KafkaSettings().max_attempts):  # each start of the stuck job ends its consumer
        consumer = start_consumer(env, group, name="stuck", module="tests.support.stuck_engine")
        stuck_at = time.monotonic()
        while consumer.process.poll() is None and time.monotonic() - stuck_at < STALL + 120:
            try:
                health = requests.get(f"{consumer.probe}/health", timeout=5).json()
            except requests.ConnectionError:  # it has just exited
                break
            assert health["loop_age_seconds"] < 5, health  # the poll loop turns all along
            time.sleep(1)
        consumer.process.wait(30)
        assert consumer.process.poll() == EXIT_JOB_OVERDUE, consumer.log_tail()
        exits.append(time.monotonic() - stuck_at)
        log = consumer.log_lines()
        assert "stuck in the engine for ever" in log and "exiting: a job outran its deadline" in log
        assert f"JOB_STALL_SECONDS={STALL:g}" in log
    assert not results_for(results.events, ids["stuck"]), "the stuck input was answered while it ran"
    # the next start is one too many: answered at once, and the partition moves on
    consumer = start_consumer(env, group, name="after", module="tests.support.stuck_engine")
    events = results.wait_for(lambda got: all(results_for(got, i) for i in ids.values()), 300, "every answer")
    [stuck] = results_for(events, ids["stuck"])
    assert stuck.type == "dev.diarization.job.failed" and stuck.data["error"]["code"] == "too_many_attempts"
    for name in ("first", "second"):
        [done] = results_for(events, ids[name])
        assert done.type == "dev.diarization.job.completed", done.data
    assert len({event.id for event in events}) == len(events) == 3  # one answer, one id per input
    assert consumer.process.poll() is None
    print(f"\nstuck job: consumer exited after {[round(s) for s in exits]} s (JOB_STALL_SECONDS={STALL:g})")


def test_a_stuck_job_fails_the_shims_liveness(settings, tmp_path, clips):
    port = free_port()
    log = tmp_path / "stuck-shim.log"
    env = shim_env(settings.engine.model, port, STUCK_DOOR="shim", STUCK_ON_SECONDS=str(STUCK_SECONDS))
    process = start_module("tests.support.stuck_engine", env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/ready", process, timeout=300, log=log)

        def post(name: str) -> None:
            try:
                requests.post(f"{base}/v1/diarize", files={"file": clips[name]}, headers=API_AUTH, timeout=STALL + 60)
            except requests.RequestException:
                pass  # the stuck request never gets its answer

        threading.Thread(target=post, args=("stuck",), daemon=True).start()
        time.sleep(5)
        threading.Thread(target=post, args=("first",), daemon=True).start()  # queued behind it: not stuck itself
        started = time.monotonic()
        while (health := requests.get(f"{base}/health", timeout=5)).status_code == 200:
            assert time.monotonic() - started < STALL + 30, "the stuck job never failed /health"
            time.sleep(1)
        body = health.json()
        assert health.status_code == 503 and body["status"] == "stuck" and "no progress" in body["error"], body
        assert time.monotonic() - started > STALL - 10  # not before the job was silent that long
    finally:
        workers = children(process.pid)  # gunicorn's worker holds the stuck thread: SIGKILL it too
        process.kill()
        process.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_store_that_never_answers_leaves_the_poll_loop_turning(stack, start_consumer, reader):
    proxy = S3Proxy(stack.env["S3_ENDPOINT"])
    try:
        topics = stack.topics("silent-store")
        talk = conversation(2, 180, seed=11)  # three embedding regions, slowed to 15 s each: a long job
        consumer = start_consumer(
            {**topics, "S3_ENDPOINT": proxy.endpoint, "SLOW_EMBEDDING_SECONDS": "15"},
            module="tests.support.slow_consumer",
        )
        event_id = _send(stack, topics["KAFKA_INPUT_TOPIC"], "long", talk.wav.read_bytes())
        results = reader(topics["KAFKA_RESULTS_TOPIC"])
        deadline = time.monotonic() + 120
        while consumer.metric("diarization_jobs_in_flight") < 1:  # the job has its slot
            assert time.monotonic() < deadline, consumer.log_tail()
            time.sleep(0.5)
        time.sleep(3)  # the audio is downloaded; the job runs on the slowed engine
        proxy.silent.set()
        ages = []
        silent_until = time.monotonic() + 45  # leases (every 10 s) and the result write hang meanwhile
        while time.monotonic() < silent_until:
            ages.append(requests.get(f"{consumer.probe}/health", timeout=5).json()["loop_age_seconds"])
            time.sleep(0.25)
        proxy.silent.clear()
        events = results.wait_for(lambda got: results_for(got, event_id), 300, "the long job's answer")
        [done] = results_for(events, event_id)
        assert done.type == "dev.diarization.job.completed", done.data
        assert max(ages) < 5, f"the poll loop stalled {max(ages)} s while the store was silent"
        assert "lease not renewed" in consumer.log_lines()  # the silence did reach the store calls
        print(f"\nsilent store, 45 s: poll loop age at most {max(ages):.1f} s ({len(ages)} samples)")
    finally:
        proxy.close()

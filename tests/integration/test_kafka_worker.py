"""The Kafka consumer on a real broker and a real MinIO, with the real model."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

import schemas
from tests.support.audio_bytes import encode, tone
from tests.support.conversation import conversation
from tests.support.stack import cloudevent_headers, results_for, structured_cloudevent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sample_bytes(sample) -> bytes:
    return sample[0].read_bytes()


def _key(name: str) -> str:
    return f"it/{uuid.uuid4().hex[:8]}/{name}"


def test_upload_to_the_bucket_produces_a_result_event_and_result_objects(stack, start_consumer, reader, sample_bytes):
    topics = stack.topics("upload")
    group = f"it-upload-{uuid.uuid4().hex[:6]}"
    # MinIO notifies the shared uploads topic; this consumer starts at its current end
    stack.move_group_to_end(group, stack.env["KAFKA_INPUT_TOPIC"])
    start_consumer(
        {"KAFKA_RESULTS_TOPIC": topics["KAFKA_RESULTS_TOPIC"], "KAFKA_DLQ_TOPIC": topics["KAFKA_DLQ_TOPIC"]}, group
    )
    key = _key("meeting room 1.wav")
    stack.upload(key, sample_bytes, metadata={"num-speakers": "2"})
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    [event] = results.wait_for(lambda events: any(e.subject == f"audio/{key}" for e in events), 120, "the result event")
    assert event.type == "dev.diarization.job.completed", event.data
    schemas.validator("job-completed").validate(event.data)
    assert event.key == f"audio/{key}".encode()
    assert event.data["num_speakers"] == 2 and event.data["options"]["num_speakers"] == 2
    assert event.data["input"]["type"] == "s3:ObjectCreated:Put"
    assert event.data["speech_segments"] and not event.data["reused"]
    minio = stack.minio()
    locations = event.data["results"]
    assert locations["json"].startswith(f"results/audio/{key}/") and locations["json"].endswith(".json")
    assert locations["rttm"].startswith(locations["json"].removesuffix(".json") + ".")
    stored = json.loads(minio.get_object("diarization-results", locations["json"]).read())
    assert stored["segments"] == event.data["segments"]
    rttm = minio.get_object("diarization-results", locations["rttm"]).read().decode()
    assert rttm.startswith("SPEAKER meeting_room_1 1 ") and len(rttm.splitlines()) == len(event.data["segments"])


def test_binary_and_structured_cloudevents_and_idempotent_reuse(stack, start_consumer, reader, sample_bytes):
    topics = stack.topics("ce")
    consumer = start_consumer(topics)
    key = _key("sample.wav")
    stack.upload(key, sample_bytes)
    stack.produce(
        topics["KAFKA_INPUT_TOPIC"],
        json.dumps({"bucket": "audio", "key": key}).encode(),
        key.encode(),
        cloudevent_headers("bin-1"),
    )
    stack.produce(
        topics["KAFKA_INPUT_TOPIC"],
        structured_cloudevent("str-1", {"bucket": "audio", "key": key}),
        key.encode(),
        [("content-type", b"application/cloudevents+json")],
    )
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    events = results.wait_for(lambda ev: results_for(ev, "bin-1") and results_for(ev, "str-1"), 120, "both results")
    [binary] = results_for(events, "bin-1")
    [structured] = results_for(events, "str-1")
    assert binary.type == structured.type == "dev.diarization.job.completed"
    # the same object and options: the second is answered from the stored result
    assert not binary.data["reused"] and structured.data["reused"]
    assert structured.data["segments"] == binary.data["segments"]
    assert binary.id != structured.id
    assert consumer.metric('diarization_jobs_total{outcome="reused",task="event"}') == 1


def test_bad_inputs_fail_or_dead_letter_and_the_consumer_keeps_serving(stack, start_consumer, reader, sample_bytes):
    topics = stack.topics("bad")
    consumer = start_consumer(topics)
    corrupt, good = _key("corrupt.wav"), _key("good.wav")
    stack.upload(corrupt, encode(tone(3))[:5000])
    stack.upload(good, sample_bytes)
    topic = topics["KAFKA_INPUT_TOPIC"]
    for event_id, key in (("corrupt-1", corrupt), ("missing-1", _key("nowhere.wav")), ("denied-1", None)):
        data = (
            {"bucket": "diarization-results", "key": "results/x.json"}
            if key is None
            else {"bucket": "audio", "key": key}
        )
        stack.produce(topic, json.dumps(data).encode(), None, cloudevent_headers(event_id))
    stack.produce(topic, b"\x00\xffnot an event at all", b"junk-key")
    stack.produce(topic, json.dumps({"bucket": "audio", "key": good}).encode(), None, cloudevent_headers("good-1"))
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    events = results.wait_for(
        lambda ev: len([e for e in ev if e.type.endswith((".completed", ".failed"))]) >= 5, 180, "5 results"
    )
    codes = {e.data["input"]["id"]: (e.data.get("error") or {}).get("code") for e in events}
    assert codes["corrupt-1"] == "corrupt_audio"
    assert codes["missing-1"] == "object_not_found"
    assert codes["denied-1"] == "access_denied"
    assert codes["good-1"] is None and results_for(events, "good-1")[0].type.endswith(".completed")
    [unparseable] = [e for e in events if e.data["input"]["type"] == "unparseable"]
    assert unparseable.data["error"]["code"] == "invalid_event" and unparseable.key == b"junk-key"
    for event in events:
        schemas.validator("job-completed" if event.type.endswith(".completed") else "job-failed").validate(event.data)
    dlq = reader(topics["KAFKA_DLQ_TOPIC"])
    dlq.wait_for(lambda _: len(dlq.raw) >= 1, 30, "the dead letter")
    [(key, value, headers)] = dlq.raw
    assert (key, value) == (b"junk-key", b"\x00\xffnot an event at all")
    assert headers["dlq-error-code"] == b"invalid_event" and headers["dlq-source-topic"] == topic.encode()
    # every input was handled: the group's offsets moved past all five records
    time.sleep(1)
    committed = [offset for offset in stack.committed(consumer.group, topic).values() if offset >= 0]
    assert sum(committed) == 5, consumer.log_lines()[-4000:]


def test_killed_mid_job_and_restarted_gives_one_result_id_per_input(stack, start_consumer, reader):
    topics = stack.topics("kill", partitions=1)
    talk = conversation(num_speakers=2, duration=40, seed=11).wav.read_bytes()
    inputs = [f"kill-{i}" for i in range(4)]
    for event_id in inputs:
        key = _key(f"{event_id}.wav")
        stack.upload(key, talk)
        stack.produce(
            topics["KAFKA_INPUT_TOPIC"],
            json.dumps({"bucket": "audio", "key": key}).encode(),
            None,
            cloudevent_headers(event_id),
        )
    group = f"it-kill-{uuid.uuid4().hex[:6]}"
    first = start_consumer(topics, group, name="first")
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    results.wait_for(lambda ev: len({e.data["input"]["id"] for e in ev}) >= 1, 180, "the first result")
    time.sleep(2.0)  # well inside the next job
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    start_consumer(topics, group, name="second")
    results.wait_for(lambda ev: all(results_for(ev, i) for i in inputs), 300, "a result for every input")
    results.drain(3)
    for event_id in inputs:
        answers = results_for(results.events, event_id)
        assert answers and all(a.type.endswith(".completed") for a in answers), answers
        assert len({a.id for a in answers}) == 1, f"{event_id}: distinct result ids {[a.id for a in answers]}"


def test_minio_outage_makes_events_wait_then_complete(stack, start_consumer, reader, sample_bytes):
    topics = stack.topics("outage")
    consumer = start_consumer(topics)
    key = _key("during-outage.wav")
    stack.upload(key, sample_bytes)
    stack.stop(only="minio")
    try:
        stack.produce(
            topics["KAFKA_INPUT_TOPIC"],
            json.dumps({"bucket": "audio", "key": key}).encode(),
            None,
            cloudevent_headers("outage-1"),
        )
        results = reader(topics["KAFKA_RESULTS_TOPIC"])
        time.sleep(8)
        results.drain(1)
        assert not results_for(results.events, "outage-1"), "a result appeared while MinIO was down"
        assert consumer.metric('kafka_retries_total{reason="storage_unavailable"}') >= 1
        assert consumer.metric("kafka_messages_total") == 0
    finally:
        stack.restart("minio")
    events = results.wait_for(lambda ev: results_for(ev, "outage-1"), 120, "the result after MinIO returned")
    [result] = results_for(events, "outage-1")
    assert result.type == "dev.diarization.job.completed"


def test_job_longer_than_max_poll_interval_causes_no_rebalance_and_reports_progress(stack, start_consumer, reader):
    topics = stack.topics("long", partitions=1)
    talk = conversation(num_speakers=3, duration=240, seed=5).wav.read_bytes()
    key = _key("long.wav")
    stack.upload(key, talk)
    consumer = start_consumer(
        {
            **topics,
            "KAFKA_MAX_POLL_INTERVAL_MS": "8000",
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "PROGRESS_MIN_AUDIO_SECONDS": "60",
            "PROGRESS_INTERVAL_SECONDS": "1",
        }
    )
    started = time.monotonic()
    stack.produce(
        topics["KAFKA_INPUT_TOPIC"],
        json.dumps({"bucket": "audio", "key": key}).encode(),
        None,
        cloudevent_headers("long-1"),
    )
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    events = results.wait_for(lambda ev: results_for(ev, "long-1"), 600, "the long job's result")
    elapsed = time.monotonic() - started
    assert elapsed > 8, f"the job took {elapsed:.1f} s, not longer than max.poll.interval.ms; use longer audio"
    [result] = results_for(events, "long-1")
    assert result.type == "dev.diarization.job.completed" and not result.data["reused"]
    progress = [e.data["fraction"] for e in events if e.type == "dev.diarization.job.progress"]
    assert progress and progress == sorted(progress) and 0 < progress[-1] < 1
    assert consumer.metric('kafka_rebalances_total{kind="revoked"}') == 0
    assert consumer.metric('kafka_rebalances_total{kind="lost"}') == 0
    assert consumer.metric('kafka_rebalances_total{kind="assigned"}') == 1
    assert consumer.metric('diarization_jobs_total{outcome="completed",task="diarization"}') == 1


def test_sigterm_finishes_the_job_publishes_commits_and_exits(stack, start_consumer, reader):
    topics = stack.topics("term", partitions=1)
    talk = conversation(num_speakers=2, duration=90, seed=13).wav.read_bytes()
    key = _key("term.wav")
    stack.upload(key, talk)
    consumer = start_consumer(topics)
    stack.produce(
        topics["KAFKA_INPUT_TOPIC"],
        json.dumps({"bucket": "audio", "key": key}).encode(),
        None,
        cloudevent_headers("term-1"),
    )
    deadline = time.monotonic() + 60
    while consumer.metric("diarization_jobs_in_flight") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert consumer.metric("diarization_jobs_in_flight") == 1, "the job never started"
    consumer.process.send_signal(signal.SIGTERM)
    assert consumer.process.wait(180) == 0, consumer.log_lines()[-3000:]
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    events = results.wait_for(lambda ev: results_for(ev, "term-1"), 30, "the result published before exit")
    [result] = results_for(events, "term-1")
    assert result.type == "dev.diarization.job.completed"
    assert stack.committed(consumer.group, topics["KAFKA_INPUT_TOPIC"]) == {0: 1}


def test_probes_of_a_running_consumer(stack, start_consumer):
    import requests

    consumer = start_consumer(stack.topics("live"))
    health = requests.get(f"{consumer.probe}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert health.json()["loop_age_seconds"] < 5
    assert requests.get(f"{consumer.probe}/ready", timeout=5).status_code == 200
    assert consumer.metric("diarization_model_ready") == 1

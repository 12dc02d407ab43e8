"""Record sizes at the defaults a user deploys with: no record is retried for ever.

The broker's topics keep Kafka's default ``max.message.bytes`` (1048588) and the consumer
its default settings: nothing here lowers a limit to make the test easier.
"""

from __future__ import annotations

import json
import random
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import schemas
from consumer.config import Settings
from consumer.kafka.connection import client_configs
from consumer.kafka.records import record_size, result_record
from tests.support.conversation import conversation
from tests.support.dense_result import dense_completed
from tests.support.stack import TopicReader, cloudevent_headers, results_for

pytestmark = pytest.mark.integration

GARBAGE_BYTES = 1_040_000  # over librdkafka's default message.max.bytes (1000000), under Kafka's


@pytest.fixture(scope="module")
def talk() -> bytes:
    return conversation(num_speakers=2, duration=12, seed=101).wav.read_bytes()


def _produce_upload(bootstrap: str, topic: str, key: str, event_id: str) -> int:
    """Produce the structured CloudEvent of an upload of ``key`` in the audio bucket; its offset."""
    value = json.dumps({"bucket": "audio", "key": key}).encode()
    return _produce(bootstrap, topic, value, key.encode(), cloudevent_headers(event_id))


def _produce(bootstrap: str, topic: str, value: bytes, key: bytes | None, headers=None, partition: int = 0) -> int:
    """Produce one record of any size the topic takes to ``partition``; its offset, once acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.max.bytes": 4_000_000})
    reports: list[tuple[object, int]] = []
    producer.produce(
        topic,
        value=value,
        key=key,
        headers=headers or [],
        partition=partition,
        on_delivery=lambda error, message: reports.append((error, message.offset())),
    )
    assert producer.flush(30) == 0 and [e for e, _ in reports] == [None], f"the record was not delivered: {reports}"
    return reports[0][1]


def _garbage(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _wait_committed(stack, group: str, topic: str, partition: int, offset: int, timeout: float) -> None:
    """Wait until ``group`` committed at least ``offset`` on ``partition``; fail at ``timeout``."""
    started = time.monotonic()
    while (committed := stack.committed(group, topic).get(partition, -1)) < offset:
        assert time.monotonic() - started < timeout, f"committed {committed}, not {offset}, after {timeout:.0f} s"
        time.sleep(0.5)


def test_a_garbage_record_on_the_uploads_topic_is_dead_lettered_within_a_minute(stack, start_consumer, reader, talk):
    """1,040,000 bytes of garbage on the stack's own ``audio-uploads`` topic (Kafka's default
    limits) is dead-lettered whole and committed within a minute, and the upload behind it
    on its partition completes."""
    topics = stack.topics("limits")
    uploads = stack.env["KAFKA_INPUT_TOPIC"]
    group = f"limits-{uuid.uuid4().hex[:6]}"
    stack.move_group_to_end(group, uploads)
    consumer = start_consumer(
        {"KAFKA_RESULTS_TOPIC": topics["KAFKA_RESULTS_TOPIC"], "KAFKA_DLQ_TOPIC": topics["KAFKA_DLQ_TOPIC"]}, group
    )
    key = f"limits/{uuid.uuid4().hex[:8]}/after-garbage.wav"
    stack.upload(key, talk)  # its bucket notification lands on the same topic and is answered too
    garbage = _garbage(GARBAGE_BYTES, 1)
    started = time.monotonic()
    offset = _produce(stack.bootstrap, uploads, garbage, b"garbage")
    _produce_upload(stack.bootstrap, uploads, key, "after-garbage")
    dead_letters = reader(topics["KAFKA_DLQ_TOPIC"])
    dead_letters.wait_for(lambda _: len(dead_letters.raw) >= 1, 60, "the dead letter")
    _wait_committed(stack, group, uploads, 0, offset + 1, 60 - (time.monotonic() - started))
    seconds = time.monotonic() - started  # from producing the garbage to its commit
    [(dead_key, value, headers)] = dead_letters.raw
    assert dead_key == b"garbage" and value == garbage, f"{len(value)} bytes dead-lettered"
    assert headers["dlq-original-size"] == str(GARBAGE_BYTES).encode() and "dlq-truncated" not in headers
    assert headers["dlq-source-topic"] == uploads.encode() and headers["dlq-source-partition"] == b"0"
    assert headers["dlq-source-offset"] == str(offset).encode()
    assert headers["dlq-error-code"] == b"invalid_event"
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    events = results.wait_for(lambda ev: results_for(ev, "after-garbage"), 180, "the upload behind the garbage")
    [after] = results_for(events, "after-garbage")
    assert after.type == "dev.diarization.job.completed", after.data
    [garbage_answer] = [e for e in events if e.data["input"]["type"] == "unparseable"]
    assert garbage_answer.data["error"]["code"] == "invalid_event" and garbage_answer.key == b"garbage"
    assert "publishing results failed" not in consumer.log_lines()
    print(f"LIMIT FIGURES garbage_bytes={GARBAGE_BYTES} seconds_to_commit={seconds:.1f}", flush=True)


def test_dead_letters_larger_than_the_dead_letter_topic_takes_are_truncated(stack, start_consumer, reader, talk):
    """An input topic configured for larger records than the dead-letter topic: the largest
    input the consumer accepts and one beyond its limit are dead-lettered truncated, with
    their original size, and the input behind them completes."""
    topics = stack.topics("limits-big", partitions=1)
    big_input = f"limits-big-in-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    admin.create_topics([NewTopic(big_input, 1, 1, config={"max.message.bytes": "4194304"})])[big_input].result(30)
    consumer = start_consumer({**topics, "KAFKA_INPUT_TOPIC": big_input})
    limit = Settings.from_env({}).kafka.max_message_bytes  # the consumer's default input limit
    sizes = {b"at-the-limit": limit, b"over-the-limit": 3 * limit}
    key = f"limits/{uuid.uuid4().hex[:8]}/after-big.wav"
    stack.upload(key, talk)
    for name, size in sizes.items():
        _produce(stack.bootstrap, big_input, _garbage(size, size), name)
    _produce_upload(stack.bootstrap, big_input, key, "after-big")
    dead_letters = reader(topics["KAFKA_DLQ_TOPIC"])
    dead_letters.wait_for(lambda _: len(dead_letters.raw) >= 2, 60, "both dead letters")
    for (dead_key, value, headers), (name, size) in zip(dead_letters.raw, sizes.items(), strict=True):
        assert dead_key == name
        assert headers["dlq-original-size"] == str(size).encode() and headers["dlq-truncated"] == b"true"
        assert 1_000_000 < len(value) < 1_048_588 and _garbage(size, size).startswith(value)
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    events = results.wait_for(lambda ev: results_for(ev, "after-big"), 180, "the input behind the dead letters")
    assert results_for(events, "after-big")[0].type == "dev.diarization.job.completed"
    assert stack.committed(consumer.group, big_input) == {0: 3}
    assert "publishing results failed" not in consumer.log_lines()


def test_a_four_hour_dense_result_is_published_at_default_settings(stack):
    """The completed event of a 4-hour job with 12,500 turns (built from a synthetic engine
    result: the model would take hours) is published by the consumer's own producer
    configuration to a topic with Kafka's default limit, as a summary; one of 10,000 turns
    still carries every segment."""
    kafka = Settings.from_env(stack.env).kafka
    topic = stack.topics("dense", partitions=1)["KAFKA_RESULTS_TOPIC"]
    _, producer_config = client_configs(kafka)
    producer = Producer(producer_config)
    sizes: dict[int, int] = {}
    reports: list[object] = []
    for turns in (12_500, 10_000):
        record = result_record(
            topic, dense_completed(turns, event_id=f"dense-{turns}"), "/tests", None, kafka.max_record_bytes
        )
        sizes[turns] = record_size(record)
        producer.produce(
            record.topic,
            value=record.value,
            key=record.key,
            headers=record.headers,
            on_delivery=lambda e, _: reports.append(e),
        )
    assert producer.flush(60) == 0 and reports == [None, None], f"delivery reports: {reports}"
    results = TopicReader(stack.bootstrap, topic)
    try:
        events = results.wait_for(lambda ev: len(ev) >= 2, 60, "both completed events")
    finally:
        results.close()
    by_id = {e.data["input"]["id"]: e for e in events}
    for event in events:
        schemas.validator("job-completed").validate(event.data)
    dense, full = by_id["dense-12500"].data, by_id["dense-10000"].data
    assert "segments" not in dense and dense["summary"]["segments"] == 12_500 and dense["results"]["json"]
    assert len(full["segments"]) == len(full["speech_segments"]) == 10_000 and "summary" not in full
    print(f"LIMIT FIGURES completed_event_bytes={sizes}", flush=True)

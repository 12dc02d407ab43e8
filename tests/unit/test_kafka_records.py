"""Records the Kafka door publishes, built without a broker from plain message values."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import KafkaError, KafkaException

import schemas
from consumer.config import Settings
from consumer.errors import InvalidEventError, TooManyAttemptsError
from consumer.events import InputRef, JobFailed, ObjectRef
from consumer.kafka.connection import client_configs
from consumer.kafka.records import (
    DEFAULT_MAX_BYTES,
    RecordTooLargeError,
    coordinates,
    dead_letter_record,
    headers_of,
    record_size,
    result_record,
    where,
)
from consumer.kafka.worker import refused_for_good
from tests.support.dense_result import dense_completed


@dataclass
class Message:
    """Stands in for ``confluent_kafka.Message`` (the ``KafkaMessage`` protocol)."""

    value_: bytes | None = b"not an event"
    key_: bytes | None = b"k"
    headers_: list[tuple[str, bytes]] | None = field(default_factory=lambda: [("trace", b"1")])

    def topic(self) -> str:
        return "audio-uploads"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return 42

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.headers_


def test_dead_letter_keeps_the_message_and_says_why_and_where():
    record = dead_letter_record("dlq", Message(), InvalidEventError("x" * 2000))
    assert (record.topic, record.key, record.value) == ("dlq", b"k", b"not an event")
    headers = dict(record.headers)
    assert headers["trace"] == b"1" and headers["dlq-error-code"] == b"invalid_event"
    assert len(headers["dlq-error-message"]) == 1000
    assert (headers["dlq-source-topic"], headers["dlq-source-partition"], headers["dlq-source-offset"]) == (
        b"audio-uploads",
        b"3",
        b"42",
    )


def test_dead_letter_of_an_empty_message_without_headers():
    record = dead_letter_record("dlq", Message(value_=None, key_=None, headers_=None), InvalidEventError("empty"))
    assert record.value == b"" and record.key is None and dict(record.headers)["dlq-error-code"] == b"invalid_event"


def test_coordinates_name_an_unparseable_message_by_where_it_is():
    assert coordinates(Message()) == InputRef("audio-uploads/3/42", "kafka:audio-uploads", "unparseable")
    assert where(Message()) == {"topic": "audio-uploads", "partition": 3, "offset": 42}


def test_result_record_is_keyed_by_the_object_else_by_the_fallback():
    failed = JobFailed(InputRef("e", "/s", "t"), ObjectRef("audio", "a.wav"), "corrupt_audio", "bad")
    record = result_record("results", failed, "/svc", key=b"fallback")
    assert record.topic == "results" and record.key == b"audio/a.wav"
    assert dict(record.headers)["ce_type"] == b"dev.diarization.job.failed"
    objectless = result_record(
        "results", JobFailed(InputRef("e", "/s", "t"), None, "invalid_event", "no"), "/svc", b"fallback"
    )
    assert objectless.key == b"fallback"


def test_headers_of_takes_every_shape_confluent_kafka_gives():
    assert headers_of(Message(headers_=[("a", b"1"), ("b", None), ("c", "text")])) == [
        ("a", b"1"),
        ("b", b""),
        ("c", b"text"),
    ]
    assert headers_of(Message(headers_={"a": b"1"})) == [("a", b"1")]  # type: ignore[arg-type]
    assert headers_of(Message(headers_=None)) == []


# --- every record fits the topics' limit ------------------------------------------------------


def test_the_default_limits_are_kafkas_and_the_producer_is_held_to_them():
    kafka = Settings.from_env({}).kafka
    assert kafka.max_record_bytes == DEFAULT_MAX_BYTES == 1_048_588  # Kafka's default max.message.bytes
    consumer, producer = client_configs(kafka)
    assert producer["message.max.bytes"] == kafka.max_record_bytes
    # the consumer takes inputs larger than librdkafka's default producer limit (1000000)
    assert kafka.max_message_bytes > 1_000_000 and consumer["fetch.message.max.bytes"] > kafka.max_message_bytes


def test_a_dead_letter_too_large_to_forward_whole_is_truncated_and_says_so():
    # the largest input the consumer accepts at its defaults does not fit the topic's default limit
    largest = Settings.from_env({}).kafka.max_message_bytes
    message = Message(value_=b"\x00" * largest)
    record = dead_letter_record("dlq", message, InvalidEventError("not JSON"))
    headers = dict(record.headers)
    assert record_size(record) <= DEFAULT_MAX_BYTES
    assert largest - 2048 < len(record.value) < largest and message.value().startswith(record.value)
    assert headers["dlq-original-size"] == str(largest).encode() and headers["dlq-truncated"] == b"true"
    assert (headers["dlq-source-topic"], headers["dlq-source-partition"], headers["dlq-source-offset"]) == (
        b"audio-uploads",
        b"3",
        b"42",
    )
    assert headers["trace"] == b"1"  # the message's own headers still fit


def test_a_dead_letter_that_fits_is_forwarded_whole():
    # 1,040,000 bytes: more than librdkafka's default message.max.bytes, within Kafka's
    record = dead_letter_record("dlq", Message(value_=b"y" * 1_040_000), InvalidEventError("x"))
    assert record.value == b"y" * 1_040_000 and "dlq-truncated" not in dict(record.headers)
    assert dict(record.headers)["dlq-original-size"] == b"1040000" and record_size(record) <= DEFAULT_MAX_BYTES


def test_a_dead_letter_whose_headers_and_key_alone_are_too_large_drops_them():
    message = Message(value_=b"v" * 1000, key_=b"k" * 2_000_000, headers_=[("h", b"z" * 2_000_000)])
    record = dead_letter_record("dlq", message, InvalidEventError("x"), max_bytes=65536)
    headers = dict(record.headers)
    assert record_size(record) <= 65536 and "h" not in headers and headers["dlq-headers-dropped"] == b"1"
    assert record.key == b"k" * 1024 and headers["dlq-original-size"] == b"1000"


def _data(record) -> dict:
    message = ce_kafka.KafkaMessage(dict(record.headers), record.key, record.value)
    return ce_kafka.from_binary(message, JSONFormat()).get_data()


def test_a_four_hour_dense_result_is_published_as_a_summary_that_fits():
    outcome = dense_completed(turns=12_500)
    full = json.dumps(outcome.document).encode()
    assert len(full) > DEFAULT_MAX_BYTES, "the result is not large enough to test anything"
    record = result_record("results", outcome, "/svc")
    assert record_size(record) <= DEFAULT_MAX_BYTES
    data = _data(record)
    schemas.validator("job-completed").validate(data)
    assert "segments" not in data and "speech_segments" not in data
    summary = data["summary"]
    assert summary["segments"] == summary["speech_segments"] == 12_500
    talk = sum(s["end"] - s["start"] for s in outcome.document["segments"])
    assert sum(summary["speaker_seconds"].values()) == pytest.approx(talk, abs=0.1)
    assert data["results"] == outcome.document["results"] and data["num_speakers"] == 12


def test_a_reused_answer_says_the_same_as_the_first_at_every_size():
    for turns in (2_000, 12_500):
        first = dense_completed(turns)
        again = dataclasses.replace(first, document={**first.document, "reused": True})
        a, b = _data(result_record("results", first, "/svc")), _data(result_record("results", again, "/svc"))
        assert ("summary" in a) == ("summary" in b) == (turns > 5_000)
        assert {k: v for k, v in a.items() if k != "reused"} == {k: v for k, v in b.items() if k != "reused"}


def test_a_result_that_fits_carries_every_segment():
    outcome = dense_completed(turns=2_000)
    data = _data(result_record("results", outcome, "/svc"))
    schemas.validator("job-completed").validate(data)
    assert data["segments"] == outcome.document["segments"] and "summary" not in data


def test_an_answer_that_cannot_fit_at_all_is_refused_before_it_reaches_the_producer():
    huge = InputRef("i" * 200_000, "/tests", "dev.diarization.audio.uploaded")
    with pytest.raises(RecordTooLargeError):
        result_record("results", JobFailed(huge, None, "invalid_event", "x"), "/svc", max_bytes=65536)


# --- produce errors: outage or refused for good -------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "for_good"),
    [
        (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), True),
        (KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)), True),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), True),
        (KafkaError(KafkaError._FATAL, fatal=True), True),
        (KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True), True),
        (KafkaError(KafkaError._MSG_TIMED_OUT), False),
        (KafkaError(KafkaError._TRANSPORT), False),
        (KafkaError(KafkaError.NOT_ENOUGH_REPLICAS), False),
        (BufferError("queue full"), False),
    ],
)
def test_produce_failures_that_no_retry_can_cure_are_told_apart_from_outages(failure, for_good):
    assert refused_for_good(failure) is for_good


def test_too_many_attempts_is_a_permanent_error():
    assert TooManyAttemptsError.code == "too_many_attempts" and not TooManyAttemptsError.retryable


# --- group membership ---------------------------------------------------------------------------


def test_cooperative_assignment_and_static_membership_when_an_instance_id_is_set():
    consumer, _ = client_configs(Settings.from_env({"KAFKA_GROUP_INSTANCE_ID": "diarization-consumer-0"}).kafka)
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer["group.instance.id"] == "diarization-consumer-0"
    dynamic, _ = client_configs(Settings.from_env({}).kafka)
    assert "group.instance.id" not in dynamic

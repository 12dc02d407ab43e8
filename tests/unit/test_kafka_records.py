"""Records the Kafka door publishes, built without a broker from plain message values."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.errors import InvalidEventError
from consumer.events import InputRef, JobFailed, ObjectRef
from consumer.kafka_records import coordinates, dead_letter_record, headers_of, result_record, where


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

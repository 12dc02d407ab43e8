"""The records the Kafka door publishes, built by pure functions (no broker, no client).

``KafkaMessage`` is the part of ``confluent_kafka.Message`` these functions read, so tests
can build records from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from consumer import codec
from consumer.errors import ServiceError
from consumer.events import InputRef, JobOutcome, JobProgressed

Headers = list[tuple[str, str | bytes | None]]
"""Record headers as confluent-kafka takes them."""


class KafkaMessage(Protocol):
    """A consumed record, as ``confluent_kafka.Message`` presents it."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def headers(self) -> Headers | dict[str, str | bytes | None] | None: ...


def headers_of(message: KafkaMessage) -> list[tuple[str, bytes]]:
    """``message``'s headers as (name, bytes) pairs; a header without a value is empty bytes."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, value.encode() if isinstance(value, str) else value or b"") for name, value in pairs]


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


def result_record(topic: str, item: JobOutcome | JobProgressed, source: str, key: bytes | None = None) -> Record:
    """The result (or progress) event; ``key`` stands in for an event without an object."""
    payload = codec.encode_kafka(item, source)
    headers: Headers = list(payload.headers)
    return Record(topic, payload.key or key, payload.value, headers)


def dead_letter_record(topic: str, message: KafkaMessage, error: ServiceError) -> Record:
    """``message`` as it came, plus headers saying why it was dead-lettered and where it was."""
    headers: Headers = [
        *headers_of(message),
        ("dlq-error-code", error.code.encode()),
        ("dlq-error-message", error.message.encode()[:1000]),
        ("dlq-source-topic", str(message.topic()).encode()),
        ("dlq-source-partition", str(message.partition()).encode()),
        ("dlq-source-offset", str(message.offset()).encode()),
    ]
    return Record(topic, message.key(), message.value() or b"", headers)


def coordinates(message: KafkaMessage) -> InputRef:
    """The identity of a message that is no event: where it sits in Kafka."""
    return InputRef(
        id=f"{message.topic()}/{message.partition()}/{message.offset()}",
        source=f"kafka:{message.topic()}",
        type="unparseable",
    )


def where(message: KafkaMessage) -> dict[str, object]:
    """Log fields locating ``message``."""
    return {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}

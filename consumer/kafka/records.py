"""The records the Kafka door publishes, built by pure functions (no broker, no client).

``KafkaMessage`` is the part of ``confluent_kafka.Message`` these functions read, so tests
can build records from plain values.

Every record is built to fit ``max_bytes``, the largest record batch a topic takes (its
``max.message.bytes``, Kafka's default 1048588) and the producer's ``message.max.bytes``:
a record that does not fit is refused for good (``MSG_SIZE_TOO_LARGE``), so retrying it
could never succeed. A dead letter keeps as much of the message as fits; a completed
event whose segments would not fit carries a summary instead (``codec.fitted``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from consumer import codec
from consumer.errors import ServiceError
from consumer.events import InputRef, JobOutcome, JobProgressed

Headers = list[tuple[str, str | bytes | None]]
"""Record headers as confluent-kafka takes them."""

DEFAULT_MAX_BYTES = 1_048_588  # Kafka's default max.message.bytes (1 MiB + 12)
# How the broker counts a record against max.message.bytes: the record batch header
# (61 bytes, one record per batch at worst) plus librdkafka's upper bound of a v2
# record's framing (RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD, 36 bytes, the bound it checks
# message.max.bytes with at produce time), plus two length varints per header.
_BATCH_OVERHEAD = 61
_RECORD_OVERHEAD = 36
_HEADER_OVERHEAD = 10
_KEPT_KEY_BYTES = 1024  # a dead letter whose key alone would not fit keeps this much of it


class RecordTooLargeError(Exception):
    """A record cannot be made to fit ``max_bytes`` (an input whose identity alone is that large)."""


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


def record_size(record: Record) -> int:
    """An upper bound of the bytes ``record`` takes against ``max.message.bytes`` (see above)."""
    headers = sum(
        _HEADER_OVERHEAD + len(name.encode()) + len(value.encode() if isinstance(value, str) else value or b"")
        for name, value in record.headers
    )
    return _BATCH_OVERHEAD + _RECORD_OVERHEAD + len(record.key or b"") + len(record.value) + headers


def result_record(
    topic: str,
    item: JobOutcome | JobProgressed,
    source: str,
    key: bytes | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Record:
    """The result (or progress) event; ``key`` stands in for an event without an object.

    Fitted to ``max_bytes`` by the one rule every door follows (``codec.fitted``: a summary
    instead of every segment when the data would not fit). Raises ``RecordTooLargeError``
    if even that does not fit.
    """
    record = _encoded(topic, codec.fitted(item, max_bytes), source, key)
    if record_size(record) > max_bytes:
        raise RecordTooLargeError(f"the {type(item).__name__} record has about {record_size(record)} bytes")
    return record


def _encoded(topic: str, item: JobOutcome | JobProgressed, source: str, key: bytes | None) -> Record:
    payload = codec.encode_kafka(item, source)
    headers: Headers = list(payload.headers)
    return Record(topic, payload.key or key, payload.value, headers)


def dead_letter_record(
    topic: str, message: KafkaMessage, error: ServiceError, max_bytes: int = DEFAULT_MAX_BYTES
) -> Record:
    """``message`` as it came, plus headers saying why it was dead-lettered and where it was.

    A message too large to forward whole (it may be as large as the consumer's input
    limit, the dead-letter topic's limit is ``max_bytes``) keeps the head of its value
    that fits, marked ``dlq-truncated``; ``dlq-original-size`` always gives the size of
    the value it came with. If even its headers and key leave no room, they are cut too.
    """
    value = message.value() or b""
    own: Headers = [
        ("dlq-error-code", error.code.encode()),
        ("dlq-error-message", error.message.encode()[:1000]),
        ("dlq-source-topic", str(message.topic()).encode()),
        ("dlq-source-partition", str(message.partition()).encode()),
        ("dlq-source-offset", str(message.offset()).encode()),
        ("dlq-original-size", str(len(value)).encode()),
    ]
    record = Record(topic, message.key(), value, [*headers_of(message), *own])
    if record_size(record) <= max_bytes:
        return record
    own.append(("dlq-truncated", b"true"))
    record = Record(topic, message.key(), b"", [*headers_of(message), *own])
    if record_size(record) > max_bytes:  # the headers or the key alone are too large
        own.append(("dlq-headers-dropped", str(len(headers_of(message))).encode()))
        record = Record(topic, (message.key() or b"")[:_KEPT_KEY_BYTES] or None, b"", own)
    room = max_bytes - record_size(record)
    return Record(topic, record.key, value[:room], record.headers)


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

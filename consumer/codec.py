"""The only module that touches the CloudEvents SDK: events in and out, Kafka and HTTP.

Inputs, validated against ``schemas/`` at this boundary:

- CloudEvents of type ``dev.diarization.audio.uploaded``, binary or structured mode;
- MinIO bucket notifications (plain JSON: ``EventName`` or the older ``EventType``,
  one or more S3 records, URL-encoded keys); non-create records are ignored;
- on HTTP, also a Knative ``KafkaSource`` CloudEvent whose data is such a notification.

``decode_*`` return one item per job: an ``AudioJobRequested``, or a ``JobFailed`` for an
input that is identifiable but invalid (bad data, bad key, bad options). They raise
``InvalidEventError`` for bytes that are no event at all and ``UnsupportedEventError``
for an event of a type or spec version this service does not handle: those are
dead-lettered by a consumer. Outputs are binary-mode CloudEvents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

import schemas
from consumer.errors import InvalidEventError, ServiceError, UnsupportedEventError
from consumer.events import (
    AudioJobRequested,
    DiarizationCompleted,
    InputRef,
    JobFailed,
    JobOutcome,
    JobProgressed,
    ObjectRef,
    is_acceptable_key,
)
from consumer.formats import summarized
from consumer.options import OPTION_NAMES, JobOptions, parse_options

TYPE_UPLOADED = "dev.diarization.audio.uploaded"
TYPE_COMPLETED = "dev.diarization.job.completed"
TYPE_FAILED = "dev.diarization.job.failed"
TYPE_PROGRESS = "dev.diarization.job.progress"
TYPE_KAFKA_SOURCE = "dev.knative.kafka.event"  # what a Knative KafkaSource wraps records in
SPECVERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_OPTION_METADATA = {name.replace("_", "-"): name for name in OPTION_NAMES}  # num-speakers -> num_speakers
_FORMAT = JSONFormat()

Decoded = AudioJobRequested | JobFailed


# --- inputs --------------------------------------------------------------------------------


def decode_kafka(headers: list[tuple[str, bytes]] | None, key: bytes | None, value: bytes | None) -> list[Decoded]:
    """The jobs in one Kafka record (CloudEvent or MinIO notification)."""
    header_map = {name.lower(): data or b"" for name, data in headers or []}
    body = value or b""
    if any(name.startswith("ce_") for name in header_map):
        _check_specversion(header_map.get("ce_specversion", b"").decode("utf-8", "replace"))
        return [
            _from_cloudevent(
                lambda data: ce_kafka.from_binary(ce_kafka.KafkaMessage(header_map, key, data), _FORMAT, CloudEvent),
                body,
            )
        ]
    document = _json(body)
    if _is_structured(header_map.get("content-type", b"").decode("latin-1"), document):
        _check_specversion(str(document.get("specversion", "")))
        return [
            _from_cloudevent(
                lambda data: ce_kafka.from_structured(
                    ce_kafka.KafkaMessage(header_map, key, data), _FORMAT, CloudEvent
                ),
                body,
            )
        ]
    return _from_notification(document)


def decode_http(headers: Mapping[str, str], body: bytes) -> list[Decoded]:
    """The jobs in one HTTP request (CloudEvent, KafkaSource-wrapped or plain MinIO notification)."""
    header_map = {name.lower(): value for name, value in headers.items()}
    if any(name.startswith("ce-") for name in header_map):
        _check_specversion(header_map.get("ce-specversion", ""))
        if header_map.get("ce-type") == TYPE_KAFKA_SOURCE:
            return _from_notification(_json(body))
        return [
            _from_cloudevent(
                lambda data: ce_http.from_binary(ce_http.HTTPMessage(header_map, data), _FORMAT, CloudEvent), body
            )
        ]
    document = _json(body)
    if _is_structured(header_map.get("content-type", ""), document):
        _check_specversion(str(document.get("specversion", "")))
        if document.get("type") == TYPE_KAFKA_SOURCE:
            return _from_notification(document.get("data"))
        return [
            _from_cloudevent(
                lambda data: ce_http.from_structured(ce_http.HTTPMessage(header_map, data), _FORMAT, CloudEvent), body
            )
        ]
    return _from_notification(document)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurd nesting
        raise InvalidEventError("the message is neither a CloudEvent nor JSON") from None


def _is_structured(content_type: str, document: Any) -> bool:
    """Whether a JSON document is a structured-mode CloudEvent (which must be an object)."""
    declared = content_type.split(";")[0].strip() == STRUCTURED_CONTENT_TYPE
    if declared and not isinstance(document, dict):
        raise InvalidEventError("a structured-mode CloudEvent must be a JSON object")
    return declared or (isinstance(document, dict) and "specversion" in document)


def _encodable(*values: str | None) -> bool:
    """Whether every string can be written as UTF-8 (JSON allows lone surrogates; S3 and headers do not)."""
    try:
        for value in values:
            if value is not None:
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_specversion(version: str) -> None:
    # The SDK treats unknown versions as 1.0; this service only speaks 1.0.
    if version != SPECVERSION:
        raise UnsupportedEventError(
            f"CloudEvents spec version {version or '(none)'!r} is not supported; use {SPECVERSION}"
        )


def _from_cloudevent(read: Callable[[bytes], BaseCloudEvent], body: bytes) -> Decoded:
    """The job of a CloudEvent; ``read(payload)`` parses the message with that payload."""
    nested_too_deeply = False
    try:
        event = read(body)
    except RecursionError:
        # binary mode: absurdly nested data under what may be a valid envelope; read the
        # envelope alone so that the event itself gets its failed answer
        nested_too_deeply = True
        try:
            event = read(b"null")
        except (BaseCloudEventException, ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidEventError(f"not a valid CloudEvent: {str(exc)[:200]}") from None
    except (BaseCloudEventException, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidEventError(f"not a valid CloudEvent: {str(exc)[:200]}") from None
    if not _encodable(event.get_id(), event.get_source(), event.get_type()):
        raise InvalidEventError("the event's id, source or type is not valid text")
    if event.get_type() != TYPE_UPLOADED:
        raise UnsupportedEventError(f"event type {event.get_type()!r} is not handled; send {TYPE_UPLOADED}")
    traceparent = event.get_extension("traceparent")
    ref = InputRef(
        id=event.get_id(),
        source=event.get_source(),
        type=event.get_type(),
        traceparent=str(traceparent) if traceparent and _encodable(str(traceparent)) else None,
    )
    if nested_too_deeply:
        return JobFailed(ref, None, InvalidEventError.code, "the event data is nested too deeply")
    data: Any = event.get_data()
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            return JobFailed(ref, None, InvalidEventError.code, "the event data is not JSON")
    problem = _schema_problem("audio-uploaded", data)
    if problem:
        return JobFailed(ref, None, InvalidEventError.code, problem)
    if not _encodable(data["bucket"], data["key"], data.get("version_id"), data.get("etag")):
        return JobFailed(ref, None, InvalidEventError.code, "the object's name is not valid text")
    obj = ObjectRef(data["bucket"], data["key"], data.get("version_id"), data.get("etag"), data.get("size"))
    try:
        options = parse_options(data.get("options", {}))
    except ServiceError as exc:
        return JobFailed(ref, obj, exc.code, exc.public_message)
    return AudioJobRequested(ref, obj, options)


def _from_notification(document: Any) -> list[Decoded]:
    problem = _schema_problem("minio-notification", document)
    if problem:
        raise InvalidEventError(f"not an audio-uploaded CloudEvent nor a bucket notification: {problem}")
    jobs: list[Decoded] = []
    for record in document["Records"]:
        if not record["eventName"].startswith("s3:ObjectCreated:"):
            continue
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        raw_key = s3["object"]["key"]
        key = unquote_plus(raw_key)
        ref = InputRef(
            id=f"{bucket}/{raw_key}@{s3['object'].get('sequencer') or s3['object'].get('eTag', '')}",
            source=f"{record.get('eventSource', 's3')}:{bucket}",
            type=record["eventName"],
        )
        obj = ObjectRef(bucket, key, s3["object"].get("versionId"), s3["object"].get("eTag"), s3["object"].get("size"))
        if not _encodable(bucket, raw_key, ref.id, ref.source, ref.type):
            raise InvalidEventError("the notification's names are not valid text")
        if not is_acceptable_key(key) or not _encodable(key, obj.version_id, obj.etag):
            jobs.append(JobFailed(ref, None, InvalidEventError.code, "the object key is not acceptable"))
            continue
        try:
            jobs.append(AudioJobRequested(ref, obj, _options_from_metadata(s3["object"].get("userMetadata", {}))))
        except ServiceError as exc:
            jobs.append(JobFailed(ref, obj, exc.code, exc.public_message))
    return jobs


def _schema_problem(name: str, document: Any) -> str | None:
    error = next(iter(schemas.validator(name).iter_errors(document)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"[:500]


def _options_from_metadata(metadata: Mapping[str, str]) -> JobOptions:
    """Job options set by the uploader as ``x-amz-meta-num-speakers`` and friends."""
    fields = {}
    for name, value in metadata.items():
        option = _OPTION_METADATA.get(name.lower().removeprefix("x-amz-meta-"))
        if option is not None:
            fields[option] = value
    return parse_options(fields)


# --- outputs -------------------------------------------------------------------------------


# Room left for a result event's envelope (CloudEvent attributes or headers, an object key of
# at most 1024 characters, a transport's framing) when deciding from the size of its data
# whether it fits.
ENVELOPE_ALLOWANCE = 16 * 1024


def fitted(item: JobOutcome | JobProgressed, max_bytes: int) -> JobOutcome | JobProgressed:
    """``item`` as every door publishes it into a message of at most ``max_bytes``: one rule.

    A completed event whose data would leave less than ``ENVELOPE_ALLOWANCE`` of ``max_bytes``
    carries ``formats.summarized`` data instead of every segment (the result objects it names
    hold them all). The choice depends only on the result and the input, never on
    ``reused``, so every answer to one input says the same.
    """
    if not isinstance(item, DiarizationCompleted):
        return item
    # a reused answer differs only in its "reused" flag: measure the data without it
    fresh = DiarizationCompleted(item.request, {**item.document, "reused": False})
    event, _ = _event(fresh, "/")  # the data does not depend on the source
    if len(ce_http.to_binary(event, _FORMAT).body) <= max_bytes - ENVELOPE_ALLOWANCE:  # binary mode: the data
        return item
    return DiarizationCompleted(item.request, summarized(item.document))


def completed_data(outcome: DiarizationCompleted) -> dict[str, Any]:
    """Data of the completed event: the stored result document, for this input."""
    return {**outcome.document, "input": outcome.request.input.to_dict()}


def failed_data(outcome: JobFailed) -> dict[str, Any]:
    """Data of the failed event."""
    return {
        "input": outcome.input.to_dict(),
        "object": outcome.object.to_dict() if outcome.object else None,
        "status": "failed",
        "error": {"code": outcome.code, "message": outcome.message, "retryable": False},
    }


def _event(item: JobOutcome | JobProgressed, source: str) -> tuple[CloudEvent, str | None]:
    """The CloudEvent for an outcome or progress report, and its partition key."""
    obj: ObjectRef | None
    if isinstance(item, DiarizationCompleted):
        ref, obj, kind, data = item.request.input, item.request.object, TYPE_COMPLETED, completed_data(item)
        event_id = ref.result_id()
    elif isinstance(item, JobFailed):
        ref, obj, kind, data = item.input, item.object, TYPE_FAILED, failed_data(item)
        event_id = ref.result_id()
    else:
        ref, obj, kind = item.request.input, item.request.object, TYPE_PROGRESS
        data = {
            "input": ref.to_dict(),
            "object": obj.to_dict(),
            "status": "running",
            "fraction": round(item.fraction, 4),
            "audio_seconds": round(item.audio_seconds, 3),
        }
        event_id = ref.result_id(f"progress-{round(item.fraction, 4)}")
    attributes: dict[str, Any] = {
        "id": event_id,
        "source": source,
        "type": kind,
        "specversion": SPECVERSION,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
    }
    if obj is not None:
        attributes["subject"] = obj.partition_key
    if ref.traceparent:
        attributes["traceparent"] = ref.traceparent
    return CloudEvent(attributes, data), (obj.partition_key if obj else None)


@dataclass(frozen=True, slots=True)
class KafkaPayload:
    """A binary-mode CloudEvent as a Kafka record's key, value and headers."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class HttpPayload:
    """A binary-mode CloudEvent as HTTP headers and body."""

    headers: dict[str, str]
    body: bytes


def encode_kafka(item: JobOutcome | JobProgressed, source: str) -> KafkaPayload:
    """The binary-mode Kafka record of an outcome or progress report; keyed by the object."""
    event, key = _event(item, source)
    message = ce_kafka.to_binary(event, _FORMAT, key_mapper=lambda _: key)
    encoded_key = message.key.encode() if isinstance(message.key, str) else message.key
    return KafkaPayload(encoded_key, message.value, list(message.headers.items()))


def encode_http(item: JobOutcome | JobProgressed, source: str) -> HttpPayload:
    """The binary-mode HTTP CloudEvent of an outcome or progress report."""
    event, _ = _event(item, source)
    message = ce_http.to_binary(event, _FORMAT)
    return HttpPayload(dict(message.headers), message.body)

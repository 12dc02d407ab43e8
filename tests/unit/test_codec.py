"""Events in and out: CloudEvents (binary, structured), MinIO notifications, result events."""

from __future__ import annotations

import json

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

import schemas
from consumer import codec
from consumer.engine import EngineResult, SpeakerTurn, SpeechRegion
from consumer.errors import InvalidEventError, UnsupportedEventError
from consumer.events import (
    AudioJobRequested,
    DiarizationCompleted,
    InputRef,
    JobFailed,
    JobProgressed,
    ObjectRef,
    ResultLocation,
)
from consumer.formats import result_document
from consumer.options import JobOptions, Task

DATA = {"bucket": "audio", "key": "calls/2024/call 1.wav", "options": {"num_speakers": 2, "exclusive": True}}


def binary_headers(**overrides: str) -> list[tuple[str, bytes]]:
    attributes = {
        "ce_specversion": "1.0",
        "ce_id": "evt-1",
        "ce_source": "/uploader",
        "ce_type": codec.TYPE_UPLOADED,
        "content-type": "application/json",
        "ce_traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    attributes.update(overrides)
    return [(k, v.encode()) for k, v in attributes.items()]


def structured(**overrides) -> bytes:
    event = {
        "specversion": "1.0",
        "id": "evt-2",
        "source": "/uploader",
        "type": codec.TYPE_UPLOADED,
        "datacontenttype": "application/json",
        "data": DATA,
    }
    event.update(overrides)
    return json.dumps(event).encode()


def notification(*records: dict, name_field: str = "EventName") -> bytes:
    return json.dumps({name_field: "s3:ObjectCreated:Put", "Key": "audio/x", "Records": list(records)}).encode()


def record(key: str = "dir%2Fa+b%2Bc.wav", event: str = "s3:ObjectCreated:Put", metadata: dict | None = None) -> dict:
    obj = {"key": key, "size": 100, "eTag": "aed563ec", "sequencer": "18EADE9CB997A0C3"}
    if metadata is not None:
        obj["userMetadata"] = metadata
    return {"eventName": event, "eventSource": "minio:s3", "s3": {"bucket": {"name": "audio"}, "object": obj}}


def test_binary_cloudevent_becomes_a_job():
    [job] = codec.decode_kafka(binary_headers(), b"audio/calls", json.dumps(DATA).encode())
    assert isinstance(job, AudioJobRequested)
    assert job.input == InputRef(
        "evt-1", "/uploader", codec.TYPE_UPLOADED, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    assert job.object == ObjectRef("audio", "calls/2024/call 1.wav")
    assert job.options == JobOptions(num_speakers=2, exclusive=True)


def test_structured_cloudevent_becomes_a_job():
    [job] = codec.decode_kafka([("content-type", b"application/cloudevents+json")], None, structured())
    assert isinstance(job, AudioJobRequested) and job.input.id == "evt-2"
    # even without the content type, a JSON object with specversion is a structured event
    [job] = codec.decode_kafka(None, None, structured())
    assert job.object.key == "calls/2024/call 1.wav"


def test_vad_only_and_diarization_tasks():
    data = {**DATA, "options": {"tasks": ["vad"]}}
    [job] = codec.decode_kafka(None, None, structured(data=data))
    assert job.options.tasks == frozenset({Task.VAD}) and not job.options.diarize
    [job] = codec.decode_kafka(None, None, structured(data={**DATA, "options": {"tasks": ["diarization"]}}))
    assert job.options.tasks == frozenset({Task.DIARIZATION, Task.VAD})


def test_minio_notification_with_encoded_key_and_metadata_options():
    [job] = codec.decode_kafka(
        None, b"audio/dir/a b+c.wav", notification(record(metadata={"X-Amz-Meta-Num-Speakers": "3"}))
    )
    assert isinstance(job, AudioJobRequested)
    assert job.object == ObjectRef("audio", "dir/a b+c.wav", None, "aed563ec", 100)
    assert job.options.num_speakers == 3
    assert job.input.type == "s3:ObjectCreated:Put" and job.input.id.endswith("@18EADE9CB997A0C3")


def test_older_event_type_field_several_records_and_ignored_deletes():
    body = notification(
        record("one.wav"), record("gone.wav", "s3:ObjectRemoved:Delete"), record("two.wav"), name_field="EventType"
    )
    jobs = codec.decode_kafka(None, None, body)
    assert [j.object.key for j in jobs] == ["one.wav", "two.wav"]
    assert codec.decode_kafka(None, None, notification(record(event="s3:ObjectRemoved:Delete"))) == []


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"bucket": "audio"}, "invalid_event"),
        ({"bucket": "audio", "key": 42}, "invalid_event"),
        ({"bucket": "audio", "key": "../etc/passwd"}, "invalid_event"),
        ({"bucket": "audio", "key": "a/./b.wav"}, "invalid_event"),
        ({"bucket": "audio", "key": "bad\x07key.wav"}, "invalid_event"),
        ({"bucket": "audio", "key": "k" * 1025}, "invalid_event"),
        ({"bucket": "Not_A_Bucket", "key": "a.wav"}, "invalid_event"),
        ({"bucket": "audio", "key": "a.wav", "options": {"num_speakers": 0}}, "invalid_event"),
        (
            {"bucket": "audio", "key": "a.wav", "options": {"min_speakers": 3, "max_speakers": 2}},
            "invalid_speaker_options",
        ),
        ({"bucket": "audio", "key": "a.wav", "extra": 1}, "invalid_event"),
        ("not json at all", "invalid_event"),
    ],
)
def test_identifiable_events_with_bad_data_fail_without_dead_letter(data, code):
    value = data.encode() if isinstance(data, str) else json.dumps(data).encode()
    [outcome] = codec.decode_kafka(binary_headers(), None, value)
    assert isinstance(outcome, JobFailed) and outcome.code == code
    assert outcome.input.id == "evt-1"


@pytest.mark.parametrize(
    ("headers", "value", "error"),
    [
        (None, b"\x00\x01\x02 garbage", InvalidEventError),
        (None, b'{"hello": "world"}', InvalidEventError),
        (None, b"[1, 2, 3]", InvalidEventError),
        (None, notification(record(key="")), InvalidEventError),
        (binary_headers(ce_type="com.example.other"), b"{}", UnsupportedEventError),
        (binary_headers(ce_specversion="0.3"), b"{}", UnsupportedEventError),
        (binary_headers(ce_specversion="2.0"), b"{}", UnsupportedEventError),
        ([("ce_specversion", b"1.0"), ("ce_type", codec.TYPE_UPLOADED.encode())], b"{}", InvalidEventError),
        (None, structured(specversion="0.3"), UnsupportedEventError),
        (None, structured(type="com.example.other"), UnsupportedEventError),
        ([("content-type", b"application/cloudevents+json")], b"{not json", InvalidEventError),
    ],
)
def test_messages_that_are_no_event_are_dead_letter_material(headers, value, error):
    with pytest.raises(error):
        codec.decode_kafka(headers, None, value)


def test_bad_key_in_a_notification_fails_that_record_only():
    jobs = codec.decode_kafka(None, None, notification(record("..%2Fsecret.wav"), record("fine.wav")))
    assert isinstance(jobs[0], JobFailed) and jobs[0].code == "invalid_event"
    assert isinstance(jobs[1], AudioJobRequested)


def test_bad_metadata_options_fail_that_record():
    [job] = codec.decode_kafka(None, None, notification(record(metadata={"X-Amz-Meta-Num-Speakers": "many"})))
    assert isinstance(job, JobFailed) and job.code == "invalid_speaker_options"


def test_http_binary_structured_kafkasource_and_plain_notification():
    headers = {k.replace("ce_", "ce-"): v.decode() for k, v in binary_headers()}
    [job] = codec.decode_http(headers, json.dumps(DATA).encode())
    assert job.input.id == "evt-1"
    [job] = codec.decode_http({"Content-Type": "application/cloudevents+json"}, structured())
    assert job.input.id == "evt-2"
    wrapped = {
        "ce-specversion": "1.0",
        "ce-id": "k-1",
        "ce-source": "/kafkasource",
        "ce-type": codec.TYPE_KAFKA_SOURCE,
        "content-type": "application/json",
    }
    [job] = codec.decode_http(wrapped, notification(record("k.wav")))
    assert job.object.key == "k.wav"
    [job] = codec.decode_http({"Content-Type": "application/json"}, notification(record("plain.wav")))
    assert job.object.key == "plain.wav"


# --- outputs -------------------------------------------------------------------------------

REQUEST = AudioJobRequested(
    InputRef("evt-1", "/uploader", codec.TYPE_UPLOADED, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ObjectRef("audio", "calls/a.wav", None, "etag-1", 1000),
    JobOptions(num_speakers=2),
)
RESULT = EngineResult((SpeakerTurn(0.5, 2.0, "SPEAKER_00"),), (SpeechRegion(0.5, 2.0),), 1, 3.0, 0.3)


def completed() -> DiarizationCompleted:
    location = ResultLocation("diarization-results", "results/calls/a.wav.json", "results/calls/a.wav.rttm")
    return DiarizationCompleted(
        REQUEST, result_document(REQUEST.input, REQUEST.object, REQUEST.options, RESULT, "offline-default", location)
    )


@pytest.mark.parametrize(
    ("item", "schema", "kind"),
    [
        (completed(), "job-completed", codec.TYPE_COMPLETED),
        (JobFailed(REQUEST.input, REQUEST.object, "corrupt_audio", "truncated"), "job-failed", codec.TYPE_FAILED),
        (
            JobFailed(InputRef("t/0/5", "kafka:t", "unparseable"), None, "invalid_event", "garbage"),
            "job-failed",
            codec.TYPE_FAILED,
        ),
        (JobProgressed(REQUEST, 0.42, 600.0), "job-progress", codec.TYPE_PROGRESS),
    ],
)
def test_result_events_are_binary_cloudevents_matching_their_schema(item, schema, kind):
    payload = codec.encode_kafka(item, "/diarization-service")
    key, value, headers = payload.key, payload.value, payload.headers
    event = ce_kafka.from_binary(ce_kafka.KafkaMessage(dict(headers), key, value), JSONFormat())
    assert event.get_type() == kind and event.get_source() == "/diarization-service"
    schemas.validator(schema).validate(event.get_data())
    if isinstance(item, JobFailed) and item.object is None:
        assert key is None
    else:
        assert key == b"audio/calls/a.wav" and event.get_subject() == "audio/calls/a.wav"
    http = codec.encode_http(item, "/diarization-service")
    http_headers, body = http.headers, http.body
    assert ce_http.from_binary(ce_http.HTTPMessage(http_headers, body), JSONFormat()).get_id() == event.get_id()


def test_result_ids_are_deterministic_per_input_and_carry_the_trace():
    first = dict(codec.encode_kafka(completed(), "/s").headers)
    again = dict(codec.encode_kafka(JobFailed(REQUEST.input, None, "x", "y"), "/s").headers)
    other = dict(codec.encode_kafka(JobFailed(InputRef("evt-2", "/uploader", "t"), None, "x", "y"), "/s").headers)
    assert first["ce_id"] == again["ce_id"] != other["ce_id"]
    assert first["ce_traceparent"] == REQUEST.input.traceparent.encode()


def test_every_shipped_schema_is_valid_and_loads():
    assert {"audio-uploaded", "minio-notification", "job-completed", "job-failed", "job-progress"} <= set(
        schemas.names()
    )
    for name in schemas.names():
        schemas.validator(name).check_schema(schemas.load(name))

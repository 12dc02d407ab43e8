"""The Knative receiver (POST /) served by gunicorn on loopback, with real MinIO and the real model."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

import schemas
from tests.support.audio_bytes import encode, tone
from tests.support.conversation import conversation
from tests.support.processes import free_port
from tests.support.sink import EventSink

pytestmark = pytest.mark.integration
UPLOADED = "dev.diarization.audio.uploaded"


@pytest.fixture
def sink() -> Iterator[EventSink]:
    events = EventSink()
    yield events
    events.close()


@pytest.fixture(scope="module")
def uploaded(stack, sample) -> dict[str, str]:
    """Objects in the bucket: the sample, a corrupt file, a long conversation."""
    run = uuid.uuid4().hex[:8]
    keys = {"sample": f"recv/{run}/sample.wav", "corrupt": f"recv/{run}/corrupt.wav", "long": f"recv/{run}/long.wav"}
    stack.upload(keys["sample"], sample[0].read_bytes())
    stack.upload(keys["corrupt"], encode(tone(3))[:4000])
    stack.upload(keys["long"], conversation(num_speakers=2, duration=120, seed=21).wav.read_bytes())
    return keys


def binary(
    event_id: str, data: dict, event_type: str = UPLOADED, specversion: str = "1.0"
) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": specversion,
        "ce-id": event_id,
        "ce-source": "/tests",
        "ce-type": event_type,
        "Content-Type": "application/json",
    }
    return headers, json.dumps(data).encode()


def structured(event_id: str, data: dict) -> tuple[dict[str, str], bytes]:
    event = {"specversion": "1.0", "id": event_id, "source": "/tests", "type": UPLOADED, "data": data}
    return {"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode()


def post(base: str, message: tuple[dict[str, str], bytes]) -> requests.Response:
    headers, body = message
    return requests.post(f"{base}/", data=body, headers=headers, timeout=300)


def _error_code(response: requests.Response) -> str:
    return response.json()["error"]["code"]


def test_reply_mode_binary_structured_and_duplicates(start_shim, uploaded):
    base = start_shim()
    sample = {"bucket": "audio", "key": uploaded["sample"]}
    first = post(base, binary("b-1", sample))
    assert first.status_code == 200, first.text
    assert first.headers["ce-type"] == "dev.diarization.job.completed"
    assert first.headers["ce-subject"] == f"audio/{uploaded['sample']}"
    body = first.json()
    schemas.validator("job-completed").validate(body)
    assert body["num_speakers"] == 2 and body["input"]["id"] == "b-1"
    second = post(base, structured("s-1", {**sample, "options": {"tasks": ["vad"]}}))
    assert second.status_code == 200 and second.json()["segments"] == [] and second.json()["speech_segments"]
    # the same event delivered again: the same result id and data, without running the job again
    jobs_before = _metric(base, 'diarization_jobs_total{outcome="completed",task="diarization"}')
    again = post(base, binary("b-1", sample))
    assert again.status_code == 200 and again.headers["ce-id"] == first.headers["ce-id"]
    assert again.json() == body
    assert _metric(base, 'diarization_jobs_total{outcome="completed",task="diarization"}') == jobs_before
    assert _metric(base, 'receiver_events_total{answer="duplicate"}') == 1


def test_status_codes_follow_knative_retry_rules(start_shim, uploaded):
    base = start_shim()
    assert (r := post(base, ({"Content-Type": "application/json"}, b"{not json"))).status_code == 400
    assert _error_code(r) == "invalid_event"
    assert (r := post(base, binary("x-1", {}, event_type="com.example.unknown"))).status_code == 400
    assert _error_code(r) == "unsupported_event"
    assert _error_code(post(base, binary("x-2", {}, specversion="0.3"))) == "unsupported_event"
    oversized = ({"Content-Type": "application/json"}, b" " * (1024 * 1024 + 10))
    assert post(base, oversized).status_code == 413
    # permanent job failures are 200 with a failed event: never 404, which Knative retries
    for event_id, data, code in (
        ("f-1", {"bucket": "audio", "key": "recv/nowhere.wav"}, "object_not_found"),
        ("f-2", {"bucket": "audio", "key": uploaded["corrupt"]}, "corrupt_audio"),
        ("f-3", {"bucket": "diarization-results", "key": "results/x.json"}, "access_denied"),
        ("f-4", {"bucket": "audio", "key": "../escape.wav"}, "invalid_event"),
    ):
        response = post(base, binary(event_id, data))
        assert response.status_code == 200, (event_id, response.text)
        assert response.headers["ce-type"] == "dev.diarization.job.failed"
        schemas.validator("job-failed").validate(response.json())
        assert response.json()["error"]["code"] == code


def test_transient_storage_trouble_is_503(start_shim, uploaded):
    # nothing listens on this port: the object store is unreachable
    base = start_shim(S3_ENDPOINT=f"127.0.0.1:{free_port()}")
    response = post(base, binary("t-1", {"bucket": "audio", "key": uploaded["sample"]}))
    assert response.status_code == 503 and _error_code(response) == "storage_unavailable"
    assert response.headers["Retry-After"]


def test_sink_mode_and_minio_notifications(start_shim, sink, uploaded):
    base = start_shim(K_SINK=sink.url)
    sent = post(base, binary("k-1", {"bucket": "audio", "key": uploaded["sample"]}))
    assert sent.status_code == 202 and sent.json()["status"] == "sent"
    [event] = sink.wait_for(1, 10)
    assert (
        event.headers["ce-type"] == "dev.diarization.job.completed"
        and event.headers["ce-id"] == sent.json()["result_id"]
    )

    # a KafkaSource-wrapped MinIO notification and a plain MinIO webhook notification
    def notification(sequencer: str) -> dict:
        record = {
            "eventName": "s3:ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "audio"},
                "object": {"key": uploaded["sample"].replace("/", "%2F"), "sequencer": sequencer},
            },
        }
        return {"EventName": "s3:ObjectCreated:Put", "Records": [record]}

    wrapped = binary("kafka-1", notification("A1"), event_type="dev.knative.kafka.event")
    assert post(base, wrapped).status_code == 202
    plain = ({"Content-Type": "application/json"}, json.dumps(notification("A2")).encode())
    assert post(base, plain).status_code == 202
    # the same notification again is a duplicate delivery: answered, not sent twice
    assert post(base, plain).status_code == 202
    events = sink.wait_for(3, 60)
    time.sleep(1)
    assert len(sink.received) == 3
    assert all(e.headers["ce-type"] == "dev.diarization.job.completed" for e in events)
    assert {json.loads(e.body)["input"]["type"] for e in events[1:]} == {"s3:ObjectCreated:Put"}


def test_async_mode_answers_at_once_and_delivers_to_the_sink_later(start_shim, sink, uploaded):
    base = start_shim(K_SINK=sink.url, RECEIVER_ASYNC="true")
    started = time.monotonic()
    accepted = post(base, binary("as-1", {"bucket": "audio", "key": uploaded["long"]}))
    assert accepted.status_code == 202 and accepted.json()["status"] == "accepted"
    assert time.monotonic() - started < 5
    [late] = sink.wait_for(1, 300)
    assert late.headers["ce-id"] == accepted.json()["result_id"]
    assert json.loads(late.body)["input"]["id"] == "as-1" and json.loads(late.body)["num_speakers"] == 2
    # a redelivery of the accepted event, once done, is answered with the same result
    again = post(base, binary("as-1", {"bucket": "audio", "key": uploaded["long"]}))
    assert again.status_code == 202 and again.json()["result_id"] == accepted.json()["result_id"]


def test_a_sink_that_is_down(start_shim, uploaded):
    down = f"http://127.0.0.1:{free_port()}/"
    base = start_shim(K_SINK=down, RECEIVER_ASYNC="true", RECEIVER_SINK_RETRY_SECONDS="3")
    started = time.monotonic()
    response = post(base, binary("a-1", {"bucket": "audio", "key": uploaded["sample"]}))
    assert response.status_code == 202 and time.monotonic() - started < 5
    # a synchronous answer needs the sink: while it is down, that is a 503 to retry
    reply_mode = start_shim(K_SINK=down)
    failed = post(reply_mode, binary("a-2", {"bucket": "audio", "key": uploaded["sample"]}))
    assert failed.status_code == 503 and _error_code(failed) == "publish_failed"


def _metric(base: str, name: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

"""The Knative receiver (POST /) served by gunicorn on loopback, with real MinIO and the real model."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

import schemas
from consumer.events import InputRef
from tests.support.audio_bytes import encode, tone
from tests.support.credentials import API_AUTH, RECEIVER_TOKEN, SENDER_AUTH, SENDER_NAMESPACE
from tests.support.knative_delivery import is_binary_cloudevent, knative_accepts
from tests.support.oidc import Issuer
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
    """Objects in the bucket: the sample and a corrupt file."""
    run = uuid.uuid4().hex[:8]
    keys = {"sample": f"recv/{run}/sample.wav", "corrupt": f"recv/{run}/corrupt.wav"}
    stack.upload(keys["sample"], sample[0].read_bytes())
    stack.upload(keys["corrupt"], encode(tone(3))[:4000])
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


def post(base: str, message: tuple[dict[str, str], bytes], **headers: str) -> requests.Response:
    """POST an event; every 2xx must be one Knative's dispatcher takes (empty, or a CloudEvent)."""
    event_headers, body = message
    headers = {**SENDER_AUTH, **headers}  # the shim's default sender check: the shared token
    response = requests.post(f"{base}/", data=body, headers={**event_headers, **headers}, timeout=300)
    if 200 <= response.status_code < 300:
        assert knative_accepts(response), (response.status_code, response.headers, response.content[:200])
    return response


def empty(response: requests.Response, status: int = 202) -> bool:
    """An answer without a body: what Knative takes as "accepted, no reply"."""
    return response.status_code == status and response.content == b"" and "content-type" not in response.headers


def result_id(event_id: str, source: str = "/tests", event_type: str = UPLOADED) -> str:
    return InputRef(event_id, source, event_type).result_id()


def _error_code(response: requests.Response) -> str:
    return response.json()["error"]["code"]


def test_reply_mode_binary_structured_and_duplicates(start_shim, uploaded):
    base = start_shim()
    sample = {"bucket": "audio", "key": uploaded["sample"]}
    first = post(base, binary("b-1", sample))
    assert first.status_code == 200, first.text
    assert is_binary_cloudevent(dict(first.headers))
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
    # the same source and id with other data is not a duplicate: it is not answered with b-1's result
    other = post(base, binary("b-1", {**sample, "options": {"tasks": ["vad"]}}))
    assert other.status_code == 200 and other.json()["segments"] == [] and other.json()["speech_segments"]
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
        assert is_binary_cloudevent(dict(response.headers))
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
    assert empty(sent), (sent.status_code, sent.content)
    # sent before the answer, or (a CPU slower than RECEIVER_REPLY_TIMEOUT_SECONDS) right after the job
    [event] = sink.wait_for(1, 600)
    assert event.headers["ce-type"] == "dev.diarization.job.completed" and event.headers["ce-id"] == result_id("k-1")
    # a duplicate delivery: answered the same way, and not sent again
    assert empty(post(base, binary("k-1", {"bucket": "audio", "key": uploaded["sample"]})))

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
    assert empty(post(base, wrapped))
    plain = ({"Content-Type": "application/json"}, json.dumps(notification("A2")).encode())
    assert empty(post(base, plain))
    # the same notification again is a duplicate delivery: answered, not sent twice
    assert empty(post(base, plain))
    # a notification with nothing to do (no created object)
    removed = notification("A3")
    removed["Records"][0]["eventName"] = "s3:ObjectRemoved:Delete"
    assert empty(post(base, ({"Content-Type": "application/json"}, json.dumps(removed).encode())))
    events = sink.wait_for(3, 600)
    time.sleep(1)
    assert len(sink.received) == 3
    assert all(e.headers["ce-type"] == "dev.diarization.job.completed" for e in events)
    assert {json.loads(e.body)["input"]["type"] for e in events[1:]} == {"s3:ObjectCreated:Put"}


def test_async_mode_answers_at_once_and_delivers_to_the_sink_later(start_shim, sink, uploaded):
    base = start_shim(K_SINK=sink.url, RECEIVER_ASYNC="true")
    started = time.monotonic()
    accepted = post(base, binary("as-1", {"bucket": "audio", "key": uploaded["sample"]}))
    assert empty(accepted)
    assert time.monotonic() - started < 5
    [late] = sink.wait_for(1, 600)
    assert late.headers["ce-id"] == result_id("as-1")
    assert json.loads(late.body)["input"]["id"] == "as-1" and json.loads(late.body)["num_speakers"] == 2
    # a redelivery of the accepted event, once done, is answered without sending it again
    assert empty(post(base, binary("as-1", {"bucket": "audio", "key": uploaded["sample"]})))
    time.sleep(1)
    assert len(sink.received) == 1


def test_a_sink_that_is_down_then_up(start_shim, uploaded):
    refusing = EventSink(status=503)
    try:
        base = start_shim(K_SINK=refusing.url, RECEIVER_ASYNC="true")
        started = time.monotonic()
        response = post(base, binary("a-1", {"bucket": "audio", "key": uploaded["sample"]}))
        assert empty(response) and time.monotonic() - started < 5
        refusing.wait_for(2, 300)  # the accepted job's result is retried while the sink refuses it
        assert refusing.accepted == []
        refusing.status = 202
        deadline = time.monotonic() + 120
        while not refusing.accepted and time.monotonic() < deadline:
            time.sleep(0.2)
        [delivered] = refusing.accepted
        assert delivered.headers["ce-id"] == result_id("a-1")
    finally:
        refusing.close()
    # a synchronous answer needs the sink: while it is down, that is a 503 to retry
    down = f"http://127.0.0.1:{free_port()}/"
    reply_mode = start_shim(K_SINK=down)
    failed = post(reply_mode, binary("a-2", {"bucket": "audio", "key": uploaded["sample"]}))
    assert failed.status_code == 503 and _error_code(failed) == "publish_failed"


def test_a_result_the_sink_never_takes_is_logged_with_its_objects_at_shutdown(stack, settings, tmp_path, uploaded):
    from tests.support.processes import shim_env, start_module, stop, wait_http

    refusing = EventSink(status=503)
    port = free_port()
    log = tmp_path / "shim.log"
    env = {**stack.env, **shim_env(settings.engine.model, port, RECEIVER_ENABLED="true", RECEIVER_TOKEN=RECEIVER_TOKEN)}
    process = start_module("http_shim.server", {**env, "K_SINK": refusing.url, "RECEIVER_ASYNC": "true"}, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/ready", process, timeout=300, log=log)
        assert empty(post(base, binary("u-1", {"bucket": "audio", "key": uploaded["sample"]})))
        refusing.wait_for(1, 300)
        assert stop(process) == 0
    finally:
        stop(process)
        refusing.close()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    [given_up] = [line for line in lines if "the sink never took" in line.get("message", "")]
    assert given_up["event_id"] == "u-1" and given_up["result_id"] == result_id("u-1")
    # the result objects of that input: <prefix><bucket>/<key>/<digest>.json and the RTTM it names
    folder = f"audio/{uploaded['sample']}/"
    assert folder in given_up["results"]["json"] and given_up["results"]["json"].endswith(".json"), given_up
    assert folder in given_up["results"]["rttm"] and given_up["results"]["rttm"].endswith(".rttm"), given_up


def test_transient_body_problems_are_retryable_on_post_root_only(start_shim):
    base = start_shim()
    port = int(base.rsplit(":", 1)[1])

    def short_body(path: str, content_type: str, authorization: str) -> tuple[int, str]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                f"Authorization: {authorization}\r\n"
                "Content-Length: 10000\r\nConnection: close\r\n\r\n".encode()
                + b'{"specversion": "1.0"'
            )
            conn.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)["error"]["code"]

    # authenticated senders: the door checks who sends before it reads a body
    assert short_body("/", "application/cloudevents+json", SENDER_AUTH["Authorization"]) == (503, "incomplete_body")
    assert short_body("/v1/diarize", "multipart/form-data; boundary=x", API_AUTH["Authorization"]) == (
        400,
        "incomplete_body",
    )


def test_the_public_service_has_no_receiver_and_guards_metrics(start_shim):
    base = start_shim(RECEIVER_ENABLED="false", API_KEY="public-k3y")
    response = requests.post(f"{base}/", data=b"{}", headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code in (404, 405) and _error_code(response) in ("not_found", "method_not_allowed")
    assert requests.get(f"{base}/metrics", timeout=30).status_code == 401
    keyed = requests.get(f"{base}/metrics", headers={"Authorization": "Bearer public-k3y"}, timeout=30)
    assert keyed.status_code == 200 and "http_requests_total" in keyed.text
    assert requests.get(f"{base}/ready", timeout=30).status_code == 200


def test_senders_must_authenticate_when_configured(start_shim, uploaded, tmp_path):
    issuer = Issuer(tmp_path)
    audience = "serving.knative.dev/service/diarization/diarization-events"
    try:
        base = start_shim(
            RECEIVER_OIDC_ISSUER=issuer.url,
            RECEIVER_OIDC_AUDIENCE=audience,
            RECEIVER_OIDC_ALLOWED_SUBJECTS=SENDER_NAMESPACE,
            RECEIVER_TOKEN="sh4red",
        )
        # the corrupt file: an accepted event is answered (a failed event) without a long job
        event = binary("auth-1", {"bucket": "audio", "key": uploaded["corrupt"]})
        jobs_before = _metric(base, "diarization_jobs_total")
        other_tenant = issuer.token(audience, claims={"sub": "system:serviceaccount:other-tenant:default"})
        for authorization in (
            None,
            "Bearer wrong",
            f"Bearer {issuer.token('another/audience')}",
            f"Bearer {other_tenant}",
        ):
            headers = {"Authorization": authorization or ""}  # "": no credentials at all
            refused = post(base, event, **headers)
            assert refused.status_code == 401 and _error_code(refused) == "unauthorized", refused.text
        assert _metric(base, "diarization_jobs_total") == jobs_before  # nothing ran
        accepted = post(base, event, Authorization=f"Bearer {issuer.token(audience)}")
        assert accepted.status_code == 200 and accepted.headers["ce-type"] == "dev.diarization.job.failed"
        assert accepted.json()["error"]["code"] == "corrupt_audio"
        shared = post(
            base, binary("auth-2", {"bucket": "audio", "key": uploaded["corrupt"]}), Authorization="Bearer sh4red"
        )
        assert shared.status_code == 200 and shared.json()["input"]["id"] == "auth-2"  # the shared token too
    finally:
        issuer.close()


def _metric(base: str, name: str) -> float:
    text = requests.get(f"{base}/metrics", headers=API_AUTH, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

"""``/v1/jobs`` end to end (real shim, real consumer, real Kafka and MinIO): a job goes through the
bucket notification like any upload, its status is read back from the store, and it outlives
the shim that took it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from minio import Minio
from minio.error import S3Error

from tests.support.conversation import conversation
from tests.support.credentials import API_AUTH
from tests.support.processes import free_port, stop
from tests.support.spoken_words import verbose_json

pytestmark = pytest.mark.integration

# at the defaults a webhook may call public https addresses only
REFUSED_AT_THE_DEFAULTS = (
    "https://127.0.0.1:8443/hook",
    "https://[::1]/hook",
    "https://10.0.0.12/hook",
    "https://192.168.1.20/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://localhost/hook",
    "https://kubernetes.default.svc/api",
    "http://93.184.215.14/hook",
)
JOB_SECONDS = 600  # a job's whole wait, on a test machine under the suite's load


@pytest.fixture
def jobs_user(stack) -> Iterator[dict[str, str]]:
    """The shim's store credentials: a MinIO user with nothing but the documented jobs policy."""
    user = stack.jobs_user()
    yield user
    stack.admin().user_remove(user["S3_ACCESS_KEY"])


@pytest.fixture
def job_door(stack, start_consumer, start_shim, jobs_user) -> str:
    """A consumer on the uploads topic MinIO notifies (from its current end), and a shim with
    jobs on, running as the jobs policy's user."""
    group = f"it-jobs-{uuid.uuid4().hex[:6]}"
    stack.move_group_to_end(group, stack.env["KAFKA_INPUT_TOPIC"])
    start_consumer({}, group)
    return start_shim(JOBS_ENABLED="true", **jobs_user)


def test_the_jobs_policy_lets_the_shim_read_no_other_object(stack, jobs_user):
    """The scoped credentials cannot read uploads or results that are not jobs'."""
    stack.upload("private/board-meeting.wav", b"not for the public shim")
    scoped = Minio(stack.env["S3_ENDPOINT"], jobs_user["S3_ACCESS_KEY"], jobs_user["S3_SECRET_KEY"], secure=False)
    for bucket, key in (("audio", "private/board-meeting.wav"), ("diarization-results", "results/audio/x.json")):
        with pytest.raises(S3Error) as refused:
            scoped.get_object(bucket, key)
        assert refused.value.code == "AccessDenied", (bucket, key)
    with pytest.raises(S3Error) as refused:
        list(scoped.list_objects("audio", prefix="private/"))
    assert refused.value.code == "AccessDenied"


def _submit(base: str, audio: bytes | None, name: str = "talk.wav", **fields: str) -> dict[str, Any]:
    """Submit a job: ``audio`` as the ``file`` part, or (None) the ``object`` that ``fields`` names."""
    files = {"file": (name, audio)} if audio is not None else None
    response = requests.post(f"{base}/v1/jobs", files=files, data=fields, headers=API_AUTH, timeout=60)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == job["links"]["self"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["filename"] == name
    return job


def _get(base: str, job_id: str) -> dict[str, Any]:
    response = requests.get(f"{base}/v1/jobs/{job_id}", headers=API_AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _until_done(base: str, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job once completed or failed, and every status seen on the way (polled each half second)."""
    seen = []
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        job = _get(base, job_id)
        seen.append(job)
        if job["status"] in ("completed", "failed"):
            return job, seen
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not done in {JOB_SECONDS} s: {seen[-1]}")


def _as_the_sync_door(base: str, job: dict[str, Any], name: str, audio: bytes, fields: dict[str, str]) -> None:
    """A completed job answers as ``POST /v1/diarize`` does for the same file and fields: the same
    turns, speakers, transcript and names in JSON, and byte for byte in SRT, WebVTT and diarized_json."""
    for fmt in ("json", "srt", "vtt", "diarized_json"):
        from_job = requests.get(f"{base}/v1/jobs/{job['id']}?format={fmt}", headers=API_AUTH, timeout=30)
        from_sync = requests.post(
            f"{base}/v1/diarize",
            files={"file": (name, audio)},
            data={**fields, "response_format": fmt},
            headers=API_AUTH,
            timeout=300,
        )
        assert from_job.status_code == from_sync.status_code == 200, (fmt, from_job.text, from_sync.text)
        assert from_job.headers["Content-Type"] == from_sync.headers["Content-Type"], fmt
        if fmt == "json":
            result, sync = from_job.json()["result"], from_sync.json()
            for key in ("segments", "num_speakers", "transcript", "identified"):
                assert result.get(key) == sync.get(key), key
        else:
            assert from_job.text == from_sync.text, fmt


def test_a_job_gives_the_turns_the_sync_door_gives_and_lists_and_deletes(stack, job_door):
    base = job_door
    audio = conversation(num_speakers=2, duration=20, seed=811).wav.read_bytes()
    job = _submit(base, audio, num_speakers="2")
    done, seen = _until_done(base, job["id"])
    assert done["status"] == "completed", done
    assert {s["status"] for s in seen} <= {"queued", "running", "completed"}
    _as_the_sync_door(base, job, "talk.wav", audio, {"num_speakers": "2"})
    assert done["result"]["num_speakers"] == 2

    rttm = requests.get(f"{base}/v1/jobs/{job['id']}?format=rttm", headers=API_AUTH, timeout=30)
    assert rttm.status_code == 200 and rttm.headers["Content-Type"].startswith("text/rttm")
    assert len(rttm.text.splitlines()) == len(done["result"]["segments"])

    short = conversation(num_speakers=2, duration=8, seed=813).wav.read_bytes()
    later = _submit(base, short, name="later.wav", tasks="vad")
    first_page = requests.get(f"{base}/v1/jobs?limit=1", headers=API_AUTH, timeout=30).json()
    assert [j["id"] for j in first_page["jobs"]] == [later["id"]]  # newest first
    second_page = requests.get(
        f"{base}/v1/jobs?limit=1&cursor={first_page['next_cursor']}", headers=API_AUTH, timeout=30
    ).json()
    assert [j["id"] for j in second_page["jobs"]] == [job["id"]]
    assert "result" not in second_page["jobs"][0]  # a page lists, GET /v1/jobs/{id} gives the result

    deleted = requests.delete(f"{base}/v1/jobs/{job['id']}", headers=API_AUTH, timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"id": job["id"], "deleted": True, "status": "completed"}
    gone = requests.get(f"{base}/v1/jobs/{job['id']}", headers=API_AUTH, timeout=30)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "job_not_found"
    minio = stack.minio()
    assert not list(minio.list_objects("audio", prefix=f"jobs/{job['id']}/", recursive=True))
    assert not list(
        minio.list_objects("diarization-results", prefix=f"results/audio/jobs/{job['id']}/", recursive=True)
    )


def test_a_job_that_fails_shows_the_error_and_bad_requests_store_nothing(stack, job_door):
    base = job_door
    job = _submit(base, b"this is a text file, not audio " * 100, name="notes.txt")
    done, _ = _until_done(base, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "not_audio", done
    for fmt in ("rttm", "srt", "vtt", "diarized_json"):
        not_yet = requests.get(f"{base}/v1/jobs/{job['id']}?format={fmt}", headers=API_AUTH, timeout=30)
        assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "job_not_completed", fmt

    before = len(list(stack.minio().list_objects("audio", prefix="jobs/", recursive=True)))
    audio = conversation(num_speakers=2, duration=20, seed=811).wav.read_bytes()
    for fields, code in (
        ({"num_speakers": "0"}, "invalid_speaker_options"),
        ({"voiceprints": "not json"}, "invalid_voiceprint"),
        ({"transcript": "not a transcript"}, "invalid_transcript"),
        ({"tasks": "transcribe"}, "invalid_request"),
        *(({"webhook_url": url}, "webhook_url_refused") for url in REFUSED_AT_THE_DEFAULTS),
    ):
        answer = requests.post(
            f"{base}/v1/jobs", files={"file": ("a.wav", audio)}, data=fields, headers=API_AUTH, timeout=60
        )
        assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text
    unauthorized = requests.post(f"{base}/v1/jobs", files={"file": ("a.wav", audio)}, timeout=60)
    assert unauthorized.status_code == 401
    assert len(list(stack.minio().list_objects("audio", prefix="jobs/", recursive=True))) == before
    for job_id in ("../../etc", "0" * 23, "nope"):
        missing = requests.get(f"{base}/v1/jobs/{job_id}", headers=API_AUTH, timeout=30)
        assert missing.status_code == 404, (job_id, missing.text)


def test_a_job_with_voiceprints_and_a_transcript_answers_as_the_sync_door_does(stack, job_door, spoken, voiceprints):
    wav, sentences = spoken
    audio, transcript = wav.read_bytes(), json.dumps(verbose_json(sentences))
    parts = {"voiceprints": json.dumps(voiceprints), "transcript": transcript}
    job = _submit(job_door, audio, name="meeting.wav", **parts)
    assert job["options"]["exclusive"] is True  # a transcript asks for exclusive turns, as in /v1/diarize
    done, _ = _until_done(job_door, job["id"])
    assert done["status"] == "completed", done
    assert set(done["result"]["identified"]) == {"ada", "grace"}
    assert [w["word"] for w in done["result"]["transcript"]["words"]] == [w.text for s in sentences for w in s.words]
    _as_the_sync_door(job_door, job, "meeting.wav", audio, parts)
    deleted = requests.delete(f"{job_door}/v1/jobs/{job['id']}", headers=API_AUTH, timeout=30)
    assert deleted.status_code == 200  # the parts go with the job
    left = stack.minio().list_objects("diarization-results", prefix=f"results/audio/jobs/{job['id']}/", recursive=True)
    assert not list(left)


def test_a_job_for_an_object_already_in_the_bucket_reads_it_there(stack, job_door):
    """The shim's store user cannot read the object; the consumer reads it, as any upload."""
    audio = conversation(num_speakers=2, duration=20, seed=811).wav.read_bytes()
    key = f"meetings/{uuid.uuid4().hex[:8]}/board.wav"
    stack.upload(key, audio)
    job = _submit(job_door, None, name="board.wav", object=f"audio/{key}", num_speakers="2")
    assert job["source"] == {"bucket": "audio", "key": key}
    done, _ = _until_done(job_door, job["id"])
    assert done["status"] == "completed", done
    _as_the_sync_door(job_door, job, "board.wav", audio, {"num_speakers": "2"})
    stored = stack.minio().stat_object("audio", f"jobs/{job['id']}/audio")
    assert stored.size == 0  # the job's audio object only starts it

    missing = _submit(job_door, None, name="none.wav", object="audio/meetings/none.wav")
    failed, _ = _until_done(job_door, missing["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "object_not_found", failed
    for reference, status, code in (
        ("diarization-results/results/audio/x.json", 422, "access_denied"),  # not a bucket the service reads
        ("audio", 400, "invalid_request"),
    ):
        answer = requests.post(f"{job_door}/v1/jobs", data={"object": reference}, headers=API_AUTH, timeout=60)
        assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text


def test_a_long_job_shows_rising_progress_and_outlives_the_shim_that_took_it(stack, start_shim, jobs_user, job_door):
    audio = conversation(num_speakers=3, duration=900, seed=812).wav.read_bytes()  # minutes of progress
    job = _submit(job_door, audio)
    fractions: list[float] = []
    deadline = time.monotonic() + JOB_SECONDS
    while len(fractions) < 2 and time.monotonic() < deadline:
        current = _get(job_door, job["id"])
        assert current["status"] in ("queued", "running"), current
        if current["status"] == "running" and current["progress"]["stage"] == "inference":
            if not fractions or current["progress"]["fraction"] > fractions[-1]:
                fractions.append(current["progress"]["fraction"])
        time.sleep(0.5)
    assert len(fractions) == 2 and 0 <= fractions[0] < fractions[1] < 1, fractions
    start_shim.stop(job_door)  # the shim that took the job goes; another one answers for it
    other = start_shim(JOBS_ENABLED="true", **jobs_user)
    done, _ = _until_done(other, job["id"])
    assert done["status"] == "completed" and done["result"]["num_speakers"] == 3, done


class Receiver:
    """A webhook receiver on loopback: verifies each delivery as the Standard Webhooks
    specification says, and keeps what it got (a receiver that is "down" is not started yet)."""

    def __init__(self, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/diarization"
        self.got: list[tuple[str, dict[str, Any]]] = []  # (webhook-id, body) of each verified delivery
        self.refused: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def verify(self, headers: dict[str, str], body: bytes) -> str:
        """The specification's check: the timestamp within five minutes, and one ``v1`` signature
        equal to base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")). Returns the webhook id."""
        webhook_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
        assert abs(time.time() - int(timestamp)) <= 300, timestamp
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest()).decode()
        given = [part.split(",", 1) for part in headers["webhook-signature"].split(" ")]
        assert any(v == "v1" and hmac.compare_digest(sig, expected) for v, sig in given), headers
        return webhook_id

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    webhook_id = receiver.verify({k.lower(): v for k, v in self.headers.items()}, body)
                except (AssertionError, KeyError, ValueError) as exc:
                    receiver.refused.append(repr(exc))
                    self.send_response(401)
                else:
                    receiver.got.append((webhook_id, json.loads(body)))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def test_webhooks_reach_a_receiver_that_was_down_for_a_minute_once_each_through_a_consumer_restart(
    stack, start_consumer, start_shim, jobs_user
):
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    receiver = Receiver(secret)
    loopback = {"WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "WEBHOOK_ALLOW_HTTP": "true"}  # opened for this test only
    group = f"it-hooks-{uuid.uuid4().hex[:6]}"
    stack.move_group_to_end(group, stack.env["KAFKA_INPUT_TOPIC"])
    consumer = start_consumer({"WEBHOOK_SECRET": secret, **loopback}, group, name="hooks")
    base = start_shim(JOBS_ENABLED="true", **jobs_user, **loopback)
    inputs = [
        ("one.wav", conversation(num_speakers=2, duration=8, seed=821).wav.read_bytes()),
        ("two.wav", conversation(num_speakers=2, duration=8, seed=822).wav.read_bytes()),
        ("notes.txt", b"this is a text file, not audio " * 100),
    ]
    jobs = [_submit(base, audio, name=name, webhook_url=receiver.url) for name, audio in inputs]
    finished = {job["id"]: _until_done(base, job["id"])[0] for job in jobs}
    down_since = time.monotonic()  # the first job's first attempt is about now; nothing listens
    assert [job["status"] for job in finished.values()] == ["completed", "completed", "failed"]

    deadline = time.monotonic() + 60
    while consumer.metric('diarization_webhook_attempts_total{outcome="retried"}') < len(jobs):
        assert time.monotonic() < deadline, consumer.log_tail()
        time.sleep(1)
    stop(consumer.process)  # the deliveries wait in the store, not in the consumer
    start_consumer({"WEBHOOK_SECRET": secret, **loopback}, group, name="hooks-again")
    time.sleep(max(0.0, 60 - (time.monotonic() - down_since)))
    receiver.start()
    try:
        deadline = time.monotonic() + 300
        while len({webhook_id for webhook_id, _ in receiver.got}) < len(jobs):
            assert time.monotonic() < deadline, (receiver.got, receiver.refused)
            time.sleep(1)
        time.sleep(5)  # a second delivery of the same id would come now
    finally:
        receiver.close()
    assert receiver.refused == []
    ids = [webhook_id for webhook_id, _ in receiver.got]
    assert sorted(ids) == sorted(f"msg_{job_id}" for job_id in finished)  # exactly once per webhook-id
    for webhook_id, body in receiver.got:
        job = finished[webhook_id.removeprefix("msg_")]
        assert body["type"] == f"job.{job['status']}"
        assert body["data"]["status"] == job["status"] and body["data"]["webhook_url"] == receiver.url
        assert body["data"].get("result", {}).get("segments") == job.get("result", {}).get("segments")
        assert body["data"].get("error") == job.get("error")
    outbox = stack.minio().list_objects("diarization-results", prefix="results/.webhooks/", recursive=True)
    assert not list(outbox)

"""Faults of the object store that are the service's own, on the real MinIO with a real consumer.

The consumer runs as a MinIO user of its own, created with MinIO's admin API (``MinioAdmin``),
so that a test can rotate, disable or restrict its credentials while jobs wait: every input
must then wait (no ``failed`` event, no commit, ``/ready`` 503) and complete once the store
serves the service again. Uploads and checks use the stack's root credentials.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from minio.credentials import StaticProvider
from minio.minioadmin import MinioAdmin

from consumer.config import Secret, StorageSettings
from consumer.errors import AccessDeniedError, StoreCredentialsError
from consumer.events import ObjectRef
from consumer.storage import ObjectStore
from tests.support.conversation import conversation
from tests.support.faults import COMPLETED, FAILED, Figures, Job, answers, result_objects

pytestmark = pytest.mark.integration

DENY_RESULT_WRITES = "deny-result-writes"


@dataclass
class StoreUser:
    """A MinIO user for one consumer, and the admin client that changes it."""

    admin: MinioAdmin
    name: str
    secret: str

    @property
    def env(self) -> dict[str, str]:
        return {"S3_ACCESS_KEY": self.name, "S3_SECRET_KEY": self.secret}


@pytest.fixture
def store_user(stack) -> Iterator[StoreUser]:
    admin = MinioAdmin(
        endpoint=stack.env["S3_ENDPOINT"],
        credentials=StaticProvider(stack.env["S3_ACCESS_KEY"], stack.env["S3_SECRET_KEY"]),
        secure=False,
    )
    user = StoreUser(admin, f"consumer-{uuid.uuid4().hex[:8]}", f"secret-{uuid.uuid4().hex}")
    admin.user_add(user.name, user.secret)
    admin.attach_policy(["readwrite"], user=user.name)
    yield user
    admin.user_remove(user.name)


@pytest.fixture(scope="module")
def talks() -> list[bytes]:
    return [conversation(num_speakers=2, duration=12, seed=201 + n).wav.read_bytes() for n in range(3)]


def _ready(consumer) -> tuple[int, dict]:
    reply = requests.get(f"{consumer.probe}/ready", timeout=5)
    return reply.status_code, reply.json()


def _wait_for_ready(consumer, status: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = _ready(consumer)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"/ready is {code} {body}, not {status}:\n{consumer.log_tail()}"
        time.sleep(0.5)


def _assert_waiting(stack, consumer, results, jobs: list[Job], earlier: int, code: str) -> dict[str, object]:
    """While the store refuses the service: /ready 503 naming ``code``, retries, no answer to
    ``jobs``, nothing committed past the ``earlier`` inputs (answered before)."""
    body = _wait_for_ready(consumer, 503, 90)
    assert body["status"] == "storage_unavailable" and body["error"]["code"] == code, body
    retries_before = consumer.metric("kafka_retries_total")
    time.sleep(8)
    results.drain(1)
    answered = [job.event_id for job in jobs if answers(results.events, job)]
    assert not answered, f"answered while the store refused the service: {answered}\n{consumer.log_tail()}"
    committed = sum(max(0, offset) for offset in stack.committed(consumer.group, consumer.input_topic).values())
    assert committed == earlier, f"{committed} inputs committed while {len(jobs)} waited behind {earlier} answered"
    assert consumer.process.poll() is None, consumer.log_tail()
    assert _ready(consumer)[0] == 503, "/ready turned 200 while the store still refused the service"
    retries = consumer.metric("kafka_retries_total")
    assert retries > retries_before, f"no retry in 8 s (retries {retries})"
    return {"ready_while_refused": body["error"]["code"], "retries": retries}


def test_rotated_credentials_pause_the_consumer_and_every_job_completes_when_they_are_restored(
    stack, scenario, store_user, talks
):
    """The default backoff (``RETRY_BACKOFF_MAX_SECONDS`` 30 s): a disabled user (MinIO answers
    ``InvalidAccessKeyId``; HEAD says only ``AccessDenied``), then a changed secret
    (``SignatureDoesNotMatch``). Five uploads wait out the first, two the second."""
    world = scenario("store-credentials", partitions=2)
    consumer = world.consumer({**store_user.env, "RETRY_BACKOFF_MAX_SECONDS": "30"})
    inputs, results = world.inputs, world.results
    figures = Figures("consumer credentials disabled, then rotated", inputs=0, faults=0)
    started = time.monotonic()

    store_user.admin.user_disable(store_user.name)
    figures.faults += 1
    for index in range(5):
        inputs.submit(talks[index % len(talks)])
    waiting = list(inputs.jobs)
    figures.notes["disabled"] = _assert_waiting(stack, consumer, results, waiting, 0, "storage_credentials_rejected")
    store_user.admin.user_enable(store_user.name)
    world.check(figures)
    assert _ready(consumer)[0] == 200

    store_user.admin.user_add(store_user.name, f"rotated-{uuid.uuid4().hex}")  # the consumer's secret is now wrong
    figures.faults += 1
    for index in range(2):
        inputs.submit(talks[index], name=f"rotated-{index}")
    waiting = inputs.jobs[5:]
    figures.notes["secret_changed"] = _assert_waiting(
        stack, consumer, results, waiting, 5, "storage_credentials_rejected"
    )
    store_user.admin.user_add(store_user.name, store_user.secret)
    figures.seconds = time.monotonic() - started
    world.check(figures)
    kinds = [event.type for job in inputs.jobs for event in answers(results.events, job)]
    assert kinds.count(FAILED) == 0 and len(inputs.jobs) == 7, kinds
    assert {job.event_id for job in inputs.jobs if answers(results.events, job)[0].type == COMPLETED} == {
        job.event_id for job in inputs.jobs
    }
    assert "InvalidAccessKeyId" in consumer.log_lines() and "SignatureDoesNotMatch" in consumer.log_lines()
    assert _wait_for_ready(consumer, 200, 30) == {"status": "ready"}


def test_results_refused_after_inference_are_stored_later_without_running_the_model_again(
    stack, scenario, store_user, talks
):
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": ["s3:PutObject"],
                # the result objects only: the attempt markers beside them (attempts/) are
                # written before a job runs, and a store refusing those holds the job back
                # before inference (the rotated-credentials test covers that)
                "Resource": [f"arn:aws:s3:::{stack.env['S3_RESULTS_BUCKET']}/results/*"],
            }
        ],
    }
    store_user.admin.policy_add(DENY_RESULT_WRITES, policy=deny)
    store_user.admin.attach_policy([DENY_RESULT_WRITES], user=store_user.name)
    world = scenario("store-results-denied", partitions=1)
    consumer = world.consumer(store_user.env)
    inputs, results = world.inputs, world.results
    for index in range(3):
        inputs.submit(talks[index])
    figures = Figures("results bucket refusing writes", inputs=0, faults=1)
    started = time.monotonic()
    figures.notes.update(_assert_waiting(stack, consumer, results, inputs.jobs, 0, "storage_unavailable"))
    ran = 'diarization_jobs_total{outcome="completed",task="diarization"}'
    assert consumer.metric(ran) == 1, "the first job ran, and no other while its result waits"
    store_user.admin.detach_policy([DENY_RESULT_WRITES], user=store_user.name)
    figures.seconds = time.monotonic() - started
    world.check(figures)
    assert consumer.metric(ran) == 3, f"the model ran {consumer.metric(ran):.0f} times for 3 inputs"
    assert "storing a result computed before the store failed" in consumer.log_lines()
    store_user.admin.policy_remove(DENY_RESULT_WRITES)


def test_a_corrupt_stored_result_is_computed_again(stack, scenario, talks):
    world = scenario("store-corrupt", partitions=1)
    consumer = world.consumer()
    inputs, results = world.inputs, world.results
    first = inputs.submit(talks[0], name="first")
    results.wait_for(lambda events: answers(events, first), 180, "the first result")
    [done] = answers(results.events, first)
    assert done.type == COMPLETED and not done.data["reused"]
    minio, bucket = stack.minio(), stack.env["S3_RESULTS_BUCKET"]
    json_key = done.data["results"]["json"]
    metadata = {
        k.removeprefix("x-amz-meta-"): v
        for k, v in minio.stat_object(bucket, json_key).metadata.items()
        if k.lower().startswith("x-amz-meta-")
    }
    for number, corrupt in enumerate((b'{"segments": [', json.dumps({"status": "completed"}).encode())):
        minio.put_object(bucket, json_key, io.BytesIO(corrupt), len(corrupt), metadata=metadata)
        again = Job(f"{first.event_id}-again-{number}", first.key)
        inputs.send(again)
        inputs.jobs.append(again)
        results.wait_for(lambda events, job=again: answers(events, job), 180, "the recomputed result")
        [redone] = answers(results.events, again)
        assert redone.type == COMPLETED and not redone.data["reused"], redone.data
        assert redone.data["segments"] == done.data["segments"]
        assert redone.data["results"]["json"] == json_key
        stored = json.loads(minio.get_object(bucket, json_key).read())
        assert stored["segments"] == done.data["segments"] and stored["input"]["id"] == again.event_id
    assert consumer.log_lines().count("stored result is corrupt; computing it again") == 2
    assert len([name for name in result_objects(stack, first) if name.endswith(".json")]) == 1


def test_a_head_denied_is_told_apart_by_the_store_s_real_answer(stack, store_user):
    """Straight on ``ObjectStore``: a HEAD answer has no body, so both a forbidden object and
    a disabled user give minio-py's ``AccessDenied``; the store's GET answer tells them apart."""
    forbidden_prefix = f"forbidden-{uuid.uuid4().hex[:6]}"
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{stack.env['S3_UPLOAD_BUCKET']}/{forbidden_prefix}/*"],
            }
        ],
    }
    policy = f"deny-{forbidden_prefix}"
    store_user.admin.policy_add(policy, policy=deny)
    store_user.admin.attach_policy([policy], user=store_user.name)
    store = ObjectStore(
        StorageSettings(
            endpoint=stack.env["S3_ENDPOINT"],
            access_key=Secret(store_user.name),
            secret_key=Secret(store_user.secret),
        )
    )
    upload_bucket = stack.env["S3_UPLOAD_BUCKET"]
    readable, forbidden = f"store/{uuid.uuid4().hex[:6]}/a.wav", f"{forbidden_prefix}/a.wav"
    for key in (readable, forbidden):
        stack.upload(key, b"RIFF")
    try:
        assert store.stat(ObjectRef(upload_bucket, readable)).etag
        with pytest.raises(AccessDeniedError) as denied:
            store.stat(ObjectRef(upload_bucket, forbidden))
        assert not denied.value.retryable and store.health.failure is None
        store_user.admin.user_disable(store_user.name)
        with pytest.raises(StoreCredentialsError) as refused:
            store.stat(ObjectRef(upload_bucket, readable))
        assert refused.value.retryable and "InvalidAccessKeyId" in refused.value.message
        assert store.health.failure is refused.value
        store_user.admin.user_enable(store_user.name)
        assert store.stat(ObjectRef(upload_bucket, readable)).etag and store.health.failure is None
    finally:
        store_user.admin.user_enable(store_user.name)
        store_user.admin.detach_policy([policy], user=store_user.name)
        store_user.admin.policy_remove(policy)

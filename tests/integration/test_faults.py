"""Faults, scripted and repeatable, against the real stack and a real consumer with the real model.

Each test injects one kind of fault while jobs are running, lets the system recover and
then checks the consumer's guarantees for every input (``tests.support.faults``): none
lost, one distinct result id per input, no partial result objects, committed offsets past
every input. Each prints its figures (``FAULT FIGURES [...]``; ``pytest -rP`` shows them).

Randomness (kill delays, which audio each input gets) comes from ``FAULT_SEED``.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from confluent_kafka import Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from minio.error import S3Error
from scipy.signal import resample_poly

from consumer.errors import InferenceError, InternalError
from consumer.events import InputRef
from consumer.kafka.attempts import marker_key
from consumer.kafka.worker import EXIT_KAFKA_FAILED
from tests.support.conversation import conversation
from tests.support.dying_consumer import DIED, RAISED
from tests.support.faults import (
    COMPLETED,
    FAILED,
    Figures,
    S3Proxy,
    answers,
    inspect_result_objects,
    pending,
    result_object_problems,
)
from tests.support.faulty_consumer import FAULT_MESSAGE
from tests.support.processes import start_module, stop

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("FAULT_SEED", "1729"))
JOB_START_TIMEOUT = 180  # a restarted consumer waits for the killed member's session to end
OUTAGE_TIMEOUT = 180  # a job in flight ends and its publish times out (5 s) well within this


@pytest.fixture(scope="module")
def talks() -> list[bytes]:
    """Short generated conversations (10-30 s, cached), so that jobs take seconds on a CPU."""
    return [
        conversation(num_speakers=2, duration=12, seed=101).wav.read_bytes(),
        conversation(num_speakers=2, duration=20, seed=102).wav.read_bytes(),
        conversation(num_speakers=3, duration=30, seed=103).wav.read_bytes(),
    ]


def _wait_for_job_start(consumer, timeout: float = JOB_START_TIMEOUT) -> float:
    """Block until the consumer has a job in flight (``diarization_jobs_in_flight``); when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if consumer.process.poll() is not None:
            raise AssertionError(
                f"the consumer exited with {consumer.process.returncode}:\n{consumer.log_lines()[-4000:]}"
            )
        if consumer.metric("diarization_jobs_in_flight") >= 1:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"no job started within {timeout:.0f} s:\n{consumer.log_lines()[-4000:]}")


def _wait_for_metric(consumer, name: str, at_least: float, timeout: float, hint: str = "") -> float:
    deadline = time.monotonic() + timeout
    value = consumer.metric(name)
    while value < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
        value = consumer.metric(name)
    assert value >= at_least, (
        f"{name} is {value}, expected >= {at_least} within {timeout:.0f} s{hint}:\n{consumer.log_lines()[-4000:]}"
    )
    return value


# --- 1. the consumer SIGKILLed at random points of jobs, 10 rounds ----------------------------


def test_consumer_sigkilled_at_random_points_ten_rounds(stack, scenario, talks):
    rng = random.Random(SEED)
    world = scenario("fault-kill", partitions=2)
    # a killed member never leaves the group: a short session lets its successor in sooner.
    # The kills here come from outside, often on the same input (the first one behind each
    # partition's committed offset): with the default MAX_ATTEMPTS (3) such an input is
    # failed too_many_attempts, as an input that kills its consumer is (test 7 below).
    env = {"KAFKA_SESSION_TIMEOUT_MS": "6000", "MAX_ATTEMPTS": "20"}
    inputs, results = world.inputs, world.results
    figures = Figures("consumer SIGKILL x10", inputs=0, faults=0, notes={"seed": SEED})
    started = time.monotonic()
    kills_in_flight = unfinished_writes = 0
    for _ in range(3):
        inputs.submit(rng.choice(talks))
    for round_number in range(10):
        # keep a backlog, so that every round finds jobs to interrupt; one new input each round
        inputs.submit(rng.choice(talks))
        while len(pending(results, inputs.jobs)) < 3:
            inputs.submit(rng.choice(talks))
        consumer = world.consumer(env, name=f"kill-round-{round_number}")
        _wait_for_job_start(consumer)
        # jobs take 1-4 s here: somewhere in the download, the model run, the writes, the
        # publish and commit, or in the next job
        time.sleep(rng.uniform(0.0, 6.0))
        if round_number % 2 == 0 and consumer.metric("diarization_jobs_in_flight") < 1:
            # a fast machine may end the backlog inside the pause: every other kill gets a job
            # in flight, whatever the machine's speed
            inputs.submit(rng.choice(talks))
            _wait_for_job_start(consumer)
        kills_in_flight += consumer.metric("diarization_jobs_in_flight") >= 1
        os.kill(consumer.process.pid, signal.SIGKILL)
        consumer.process.wait(30)
        figures.faults += 1
        problems, unfinished = inspect_result_objects(stack, inputs.jobs)
        assert not problems, f"after kill {round_number + 1}: " + "\n".join(problems)
        unfinished_writes += len(unfinished)
    world.consumer(env, name="kill-final")
    figures.seconds = time.monotonic() - started
    figures.notes["kills_with_a_job_in_flight"] = kills_in_flight
    figures.notes["rttm_without_json_seen_after_a_kill"] = unfinished_writes
    world.check(figures, timeout=600)
    assert kills_in_flight >= 5, f"only {kills_in_flight} of 10 kills hit a running job: the test did not test much"


# --- 2. the Kafka broker restarted mid-run -----------------------------------------------------


def test_kafka_broker_restarted_mid_run(stack, scenario, talks):
    world = scenario("fault-kafka", partitions=2)
    # a short delivery timeout, so that publishing during the outage fails and is retried
    consumer = world.consumer({"KAFKA_PUBLISH_TIMEOUT_SECONDS": "5"})
    inputs = world.inputs
    submitted = 6
    for index in range(submitted):
        inputs.submit(talks[index % len(talks)])
    figures = Figures("Kafka broker restarted", inputs=0, faults=0)
    started = time.monotonic()
    retries = 'kafka_retries_total{reason="publish_failed"}'
    # The broker goes down while a job runs, so that the job's result meets the outage. A job
    # that ended before the broker was down (a fast machine) publishes and the consumer fetches
    # no next one without a broker: then the broker comes back and the next job is tried.
    for _ in range(submitted):
        _wait_for_job_start(consumer)
        stack.stop(only="kafka")
        figures.faults += 1
        if consumer.metric("diarization_jobs_in_flight") >= 1:
            break
        stack.restart("kafka")
    else:
        raise AssertionError("every job ended before the broker was down: nothing met the outage")
    try:
        # jobs go on; their results cannot be published: the broker stays down until one has failed
        deadline = time.monotonic() + OUTAGE_TIMEOUT
        while consumer.metric(retries) < 1 and time.monotonic() < deadline:
            assert consumer.process.poll() is None, f"the consumer died without Kafka:\n{consumer.log_tail()}"
            time.sleep(0.5)
        figures.notes["publish_retries_so_far"] = consumer.metric(retries)
        assert consumer.process.poll() is None, f"the consumer died without Kafka:\n{consumer.log_tail()}"
    finally:
        stack.restart("kafka")
    # the scenario reads the results from the topic's start with a reader that joins after the
    # restart: a reader that had subscribed, but not polled yet, when the broker went away
    # received nothing at all afterwards in 2 runs of 12 (librdkafka 2.16)
    figures.seconds = time.monotonic() - started
    world.check(figures, timeout=400)
    assert figures.notes["publish_retries_so_far"] >= 1, f"no result publish met the outage in {OUTAGE_TIMEOUT} s"
    assert consumer.process.poll() is None


# --- 3. MinIO stopped and restarted while a batch is processed ---------------------------------


def test_minio_stopped_and_restarted_mid_batch(stack, scenario, talks):
    world = scenario("fault-minio", partitions=2)
    consumer = world.consumer()
    inputs, results = world.inputs, world.results
    for index in range(6):
        inputs.submit(talks[index % len(talks)])
    figures = Figures("MinIO stopped mid-batch", inputs=0, faults=0)
    started = time.monotonic()
    _wait_for_job_start(consumer)
    time.sleep(random.Random(SEED).uniform(0.5, 2.5))
    stack.stop(only="minio")
    try:
        figures.faults += 1
        retries_before = consumer.metric('kafka_retries_total{reason="storage_unavailable"}')
        results.drain(2)  # a result stored just before the stop may still be on its way
        answered = {job.event_id for job in inputs.jobs if answers(results.events, job)}
        time.sleep(12)
        results.drain(1)
        during = {job.event_id for job in inputs.jobs if answers(results.events, job)} - answered
        assert not during, f"results published while MinIO was down: {during}"
        _wait_for_metric(
            consumer,
            'kafka_retries_total{reason="storage_unavailable"}',
            retries_before + 1,
            30,
            hint=" (when the stop caught a request, MinIO answered it 503 with Retry-After: 60 and the storage "
            "client sleeps that out silently: see test_object_store_answering_503_...)",
        )
        figures.notes["answered_before_the_outage"] = len(answered)
    finally:
        stack.restart("minio")
    figures.seconds = time.monotonic() - started
    world.check(figures, timeout=400)
    assert len(answered) < len(inputs.jobs), "every input was answered before MinIO stopped: the outage hit no job"


# --- 3b. the object store answering 503 with Retry-After, as MinIO does while it starts or stops --


def test_object_store_answering_503_is_backed_off_by_the_consumer_then_completes(stack, scenario, talks):
    """MinIO answers ``503 XMinioServerNotInitialized`` with ``Retry-After: 60`` while it starts
    or shuts down (seen when the MinIO test above stopped it during a request). The consumer
    must treat that like any other outage: fail the storage call fast, back off with its own
    jittered backoff (``RETRY_BACKOFF_MAX_SECONDS``, 2 s here), count and log the retry, and
    complete soon after the store answers again, not sleep out the server's Retry-After.
    """
    proxy = S3Proxy(stack.env["S3_ENDPOINT"])
    try:
        proxy.unavailable.set()
        world = scenario("fault-503", partitions=1)
        consumer = world.consumer({"S3_ENDPOINT": proxy.endpoint})
        inputs, results = world.inputs, world.results  # uploads go to MinIO itself
        job = inputs.submit(talks[0])
        figures = Figures("object store answering 503 + Retry-After: 60", inputs=len(inputs.jobs), faults=1)
        started = time.monotonic()
        deadline = started + 60
        while proxy.refused == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proxy.refused, f"the consumer never reached the store:\n{consumer.log_lines()[-3000:]}"
        time.sleep(12)
        retries = consumer.metric('kafka_retries_total{reason="storage_unavailable"}')
        figures.notes.update(storage_retries_in_12s=retries, requests_answered_503=proxy.refused)
        results.drain(1)
        print(figures.line() + " (while the store answered 503)", flush=True)
        assert not answers(results.events, job), "a result while the store answered 503"
        assert retries >= 3, (
            f"{retries:.0f} storage retries and {proxy.refused} requests in 12 s while the store answered 503 with "
            f"Retry-After: {S3Proxy.RETRY_AFTER}: the storage client sleeps out the server's Retry-After (urllib3 "
            "Retry honours it by default) instead of failing fast to the consumer's backoff "
            f"(RETRY_BACKOFF_MAX_SECONDS=2)\n{consumer.log_lines()[-3000:]}"
        )
        proxy.unavailable.clear()
        recovered = time.monotonic()
        results.wait_for(lambda events: answers(events, job), 30, "the result within 30 s of the store's return")
        figures.notes["seconds_to_result_after_return"] = round(time.monotonic() - recovered, 1)
        figures.seconds = time.monotonic() - started
        world.check(figures, timeout=60)
    finally:
        proxy.close()


# --- 4. the results topic temporarily unwritable ------------------------------------------------
#
# The issue suggested min.insync.replicas=2 on the (replication factor 1) results topic, so
# that acks=all produces fail with NOT_ENOUGH_REPLICAS. Kafka 4.1 does not refuse them: the
# leader enforces min(min.insync.replicas, replication factor) ("effectiveMinIsr" in
# kafka.cluster.Partition), so on a one-broker stack that setting changes nothing, and
# adding a replica on a broker that does not exist is refused by the KRaft controller. What
# does make the topic refuse every result record, until an operator sets it back, is a
# topic-level max.message.bytes below the size of a record (MSG_SIZE_TOO_LARGE).

_TOO_SMALL = "256"  # bytes: a result CloudEvent record is larger (its headers alone come close)


def _alter_topic_config(bootstrap: str, topic: str, name: str, value: str | None) -> None:
    """Set (or, with ``None``, delete) one topic config with an incremental alter, and wait until it took."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    operation = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry(name, value, incremental_operation=operation)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    deadline = time.monotonic() + 30
    while True:
        [described] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
        entry = described.result(30)[name]
        if (entry.value == value) if value is not None else entry.is_default:
            return
        assert time.monotonic() < deadline, f"{topic}: {name} is {entry.value}, not {value or 'the default'}"
        time.sleep(0.5)


def _delivery_error(bootstrap: str, topic: str, size: int = 2000) -> str | None:
    """The error of producing one ``size``-byte record as the consumer does (acks=all, idempotent), or None.

    The probe has no CloudEvent headers: result readers skip it.
    """
    outcome: list[object] = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "message.timeout.ms": 5000}
    )
    producer.produce(topic, value=b"p" * size, on_delivery=lambda error, _: outcome.append(error))
    producer.flush(15)
    assert outcome, "the probe record got no delivery report"
    return None if outcome[0] is None else outcome[0].name()


def test_results_topic_refusing_records_for_good_makes_the_consumer_exit_and_a_restart_completes(
    stack, scenario, talks
):
    """A record the broker refuses for good (``MSG_SIZE_TOO_LARGE``) is not retried like an
    outage, which would stall the partition for good behind green probes: the consumer
    exits non-zero, commits nothing, and once the topic takes records again a restarted
    consumer answers every input."""
    world = scenario("fault-unwritable", partitions=2)
    results_topic = world.topics["KAFKA_RESULTS_TOPIC"]
    env = {"KAFKA_PUBLISH_TIMEOUT_SECONDS": "5"}
    consumer = world.consumer(env)
    inputs, results = world.inputs, world.results
    figures = Figures(f"results topic refusing records (max.message.bytes={_TOO_SMALL})", inputs=0, faults=0)
    started = time.monotonic()
    _alter_topic_config(stack.bootstrap, results_topic, "max.message.bytes", _TOO_SMALL)
    try:
        figures.faults += 1
        error = _delivery_error(stack.bootstrap, results_topic)
        assert error == "MSG_SIZE_TOO_LARGE", f"the fault is not in effect: {error}"
        for index in range(4):
            inputs.submit(talks[index % len(talks)])
        try:
            code = consumer.process.wait(240)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "the consumer kept running while every result was refused for good:\n" + consumer.log_tail()
            ) from None
        assert code == EXIT_KAFKA_FAILED, f"exit status {code}:\n{consumer.log_tail()}"
        assert "refused for good" in consumer.log_lines() and "MSG_SIZE_TOO_LARGE" in consumer.log_lines()
        figures.notes["exit_status"] = code
        figures.notes["seconds_to_exit"] = round(time.monotonic() - started, 1)
        results.drain(1)
        assert not [e for e in results.events if e.type in (COMPLETED, FAILED)], "a result got through"
        committed = stack.committed(world.group, world.input_topic)
        assert all(offset < 0 for offset in committed.values()), f"committed while nothing was published: {committed}"
    finally:
        _alter_topic_config(stack.bootstrap, results_topic, "max.message.bytes", None)
    assert _delivery_error(stack.bootstrap, results_topic) is None, "the results topic is still unwritable"
    world.consumer(env, name="restarted")
    figures.seconds = time.monotonic() - started
    world.check(figures, timeout=400)


# --- 5. the model raising mid-job ----------------------------------------------------------------


def test_model_raising_mid_job_fails_that_job_and_the_consumer_keeps_serving(scenario, talks):
    world = scenario("fault-model", partitions=1)  # one partition: the inputs run in order
    consumer = world.consumer(
        # the 1st chunk_frames call after warm-up is inside the first job (one call per
        # 60 s region of audio: the first job's only call)
        {"FAULT_EMBEDDING_CALL": "1", "FAULT_TIMES": "1"},
        module="tests.support.faulty_consumer",
    )
    assert "model fault armed" in consumer.log_lines(), consumer.log_lines()[-4000:]
    inputs, results = world.inputs, world.results
    first = inputs.submit(talks[1], name="faulty")
    for index in range(3):
        inputs.submit(talks[index], name=f"after-{index}")
    world.check(Figures("model raising mid-job", inputs=0, faults=1), expected={first.event_id: FAILED})
    [failed] = {e.id: e for e in answers(results.events, first)}.values()
    assert failed.data["error"]["code"] == "inference_failed", failed.data
    assert failed.data["error"]["retryable"] is False
    # the exception's text (CUDA messages, paths) stays in the log; the event says what happened
    assert failed.data["error"]["message"] == InferenceError.public_text, failed.data
    assert FAULT_MESSAGE not in json.dumps(failed.data) and FAULT_MESSAGE in consumer.log_lines()
    assert consumer.log_lines().count("raising the injected fault") == 1
    assert consumer.metric('kafka_messages_total{outcome="failed"}') == 1
    assert consumer.metric('kafka_messages_total{outcome="completed"}') == 3
    assert consumer.process.poll() is None, "the consumer died"


# --- 6. the disk for temporary files full --------------------------------------------------------


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"mount {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"


def _large_audio() -> bytes:
    """A 40 s conversation as a 192 kHz stereo 32-bit float WAV: ~61 MB, past the 32 MiB
    in-memory spool, yet only 40 s for the model."""
    samples, rate = sf.read(str(conversation(num_speakers=2, duration=40, seed=11).wav), dtype="float32")
    high = resample_poly(samples, 12, 1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([high, high * 0.9], axis=1), rate * 12, subtype="FLOAT", format="WAV")
    return buffer.getvalue()


def test_temporary_disk_full_waits_then_completes(stack, scenario, tmp_path: Path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(spool_dir))
    consumer = None
    try:
        world = scenario("fault-disk", partitions=1)
        audio = _large_audio()
        assert len(audio) > 40 * 1024 * 1024, len(audio)
        consumer = world.consumer({"TMPDIR": str(spool_dir)})
        inputs, results = world.inputs, world.results
        job = inputs.submit(audio, name="large")
        figures = Figures("temp disk full (8 MiB tmpfs)", inputs=0, faults=1, notes={"audio_bytes": len(audio)})
        started = time.monotonic()
        retries = _wait_for_metric(consumer, 'kafka_retries_total{reason="storage_unavailable"}', 2, 180)
        results.drain(1)
        assert not answers(results.events, job), f"a result while the disk was full: {answers(results.events, job)}"
        committed = stack.committed(world.group, world.input_topic)
        assert all(offset < 0 for offset in committed.values()), f"committed while the disk was full: {committed}"
        assert "no space left for temporary files" in consumer.log_lines()
        assert not result_object_problems(stack, inputs.jobs)
        figures.notes["storage_retries_while_full"] = retries
        _mount("-o", "remount,size=512m", str(spool_dir))
        figures.seconds = time.monotonic() - started
        world.check(figures)
        [result] = {e.id: e for e in answers(results.events, job)}.values()
        assert result.data["duration"] > 30, result.data["duration"]
    finally:
        if consumer is not None:
            stop(consumer.process)  # nothing may hold the mount open
        unmounted = subprocess.run(["umount", str(spool_dir)], capture_output=True, text=True, check=False)
        if unmounted.returncode != 0:
            subprocess.run(["umount", "-l", str(spool_dir)], check=False)
        assert unmounted.returncode == 0, f"umount {spool_dir} failed: {unmounted.stderr.strip()}"


# --- 7. an input that kills every consumer it reaches -------------------------------------------


def test_an_input_that_kills_its_consumer_is_failed_after_max_attempts_and_the_rest_complete(
    stack, settings, scenario, talks, tmp_path: Path
):
    """The marked input ends its consumer at once (``os._exit``, as an OOM kill would) each
    time it is started; the attempt marker counts the starts, and after ``MAX_ATTEMPTS``
    (default 3) the next consumer answers it ``too_many_attempts`` and goes on."""
    world = scenario("fault-crash", partitions=1)  # one partition: the inputs after it wait behind it
    # static membership: each restart rejoins as the same member at once, as a container
    # restarted in its pod does (no session timeout to wait out)
    env = {"DIE_ON_KEY_CONTAINING": "/deadly-", "KAFKA_GROUP_INSTANCE_ID": f"pod-{uuid.uuid4().hex[:6]}"}
    inputs, results = world.inputs, world.results
    inputs.submit(talks[0], name="before")
    deadly = inputs.submit(talks[0], name="deadly")
    for index in range(2):
        inputs.submit(talks[index], name=f"after-{index}")
    figures = Figures("an input killing its consumer", inputs=0, faults=0)
    started = time.monotonic()
    full_env = {
        **stack.env,
        "DIARIZATION_MODEL": settings.engine.model,
        "KAFKA_GROUP_ID": world.group,
        "CONSUMER_PROBE_PORT": "0",
        "RETRY_BACKOFF_MAX_SECONDS": "2",
        **world.topics,
        **env,
    }
    for start in range(3):  # started and died three times: nobody waits for readiness here
        log = tmp_path / f"dying-{start}.log"
        process = start_module("tests.support.dying_consumer", full_env, log)
        try:
            code = process.wait(300)
        except subprocess.TimeoutExpired:
            stop(process)
            raise AssertionError(
                f"start {start + 1} did not die on the marked input:\n{log.read_text()[-4000:]}"
            ) from None
        assert code == DIED, f"start {start + 1} exited {code}:\n{log.read_text()[-4000:]}"
        assert "dying on the marked input" in log.read_text()
        figures.faults += 1
    results.drain(1)
    assert not answers(results.events, deadly), "the marked input was answered before its attempts ran out"
    final = world.consumer(env, name="crash-final", module="tests.support.dying_consumer")
    figures.seconds = time.monotonic() - started
    world.check(figures, expected={deadly.event_id: FAILED})
    [failed] = {e.id: e for e in answers(results.events, deadly)}.values()
    assert failed.data["error"]["code"] == "too_many_attempts" and failed.data["error"]["retryable"] is False
    assert "dying on the marked input" not in final.log_lines(), "the fourth start ran the marked input again"
    assert final.process.poll() is None, "the consumer died"
    # every marker is gone once its input is answered
    minio = stack.minio()
    for job in inputs.jobs:
        ref = InputRef(job.event_id, "/tests", "dev.diarization.audio.uploaded")
        try:
            minio.stat_object(stack.env["S3_RESULTS_BUCKET"], marker_key(ref))
        except S3Error as exc:
            assert exc.code in ("NoSuchKey", "NoSuchObject"), exc
        else:
            raise AssertionError(f"{job.event_id}: its attempt marker outlived its answer")


# --- 8. an unexpected error outside the job core -----------------------------------------------


def test_an_unexpected_error_is_answered_once_under_the_inputs_own_id(scenario, reader, talks):
    """A bug outside the job core (``EventJob.handle`` itself raising) must not give a
    decodable input a second identity (its Kafka coordinates) nor a dead letter: it gets
    one ``internal_error`` answer under its own id, and the inputs after it complete."""
    world = scenario("fault-bug", partitions=1)
    consumer = world.consumer({"RAISE_ON_KEY_CONTAINING": "/buggy-"}, module="tests.support.dying_consumer")
    inputs, results = world.inputs, world.results
    inputs.submit(talks[0], name="before")
    buggy = inputs.submit(talks[0], name="buggy")
    inputs.submit(talks[1], name="after")
    figures = Figures("unexpected error outside the job core", inputs=0, faults=1)
    world.check(figures, expected={buggy.event_id: FAILED})
    [failed] = {e.id: e for e in answers(results.events, buggy)}.values()
    assert failed.data["error"] == {"code": "internal_error", "message": InternalError.public_text, "retryable": False}
    assert RAISED not in json.dumps(failed.data) and RAISED in consumer.log_lines()
    assert failed.data["object"]["key"] == buggy.key
    dead_letters = reader(world.topics["KAFKA_DLQ_TOPIC"])
    dead_letters.drain(3)
    assert not dead_letters.raw, f"a decodable input was dead-lettered: {dead_letters.raw}"
    assert consumer.metric('kafka_messages_total{outcome="dead_lettered"}') == 0
    assert consumer.log_lines().count("raising on the marked input") == 1

"""The container-free local stack (local-dev/stack.py) really runs Kafka and MinIO.

Starts its own instance (``t-stack``, ports 19090-19093; under pytest-xdist one per worker,
``t-stack-gwN`` from port 19090 + 10·N, since the scheduler may spread this module's tests),
so it can run beside the ``dev`` and ``test`` instances, and destroys it at the end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from minio import Minio

LOCAL_DEV = Path(__file__).resolve().parents[2] / "local-dev"
pytestmark = pytest.mark.integration

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under xdist
NAME = f"t-stack-{WORKER}" if WORKER else "t-stack"
# below the hashed bases (20000+), away from dev (29090) and test (29190, 29290)
PORT_BASE = 19090 + 10 * int(WORKER.removeprefix("gw") or 0)
ENV_NAMES = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_INPUT_TOPIC",
    "KAFKA_RESULTS_TOPIC",
    "KAFKA_DLQ_TOPIC",
    "S3_ENDPOINT",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_SECURE",
    "S3_UPLOAD_BUCKET",
    "S3_RESULTS_BUCKET",
]
NOTIFICATION_TIMEOUT_S = 30.0


def stack(*args: str, expect: int = 0, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``stack.py`` and fail with its output unless it exits with ``expect``."""
    result = subprocess.run(
        [sys.executable, str(LOCAL_DEV / "stack.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == expect, (
        f"stack.py {' '.join(args)} exited {result.returncode}, expected {expect}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )
    return result


def parse_env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


@pytest.fixture(scope="module")
def settings() -> Iterator[dict[str, str]]:
    """A fresh running instance; its connection settings."""
    stack("install", timeout=1800)  # a no-op when installed; a cold MinIO build takes minutes
    stack("destroy", "--name", NAME)  # leftovers of an interrupted run
    stack("start", "--name", NAME, "--port-base", str(PORT_BASE))
    try:
        yield parse_env(stack("env", "--name", NAME).stdout)
    finally:
        stack("destroy", "--name", NAME)


def s3_client(settings: dict[str, str]) -> Minio:
    return Minio(
        settings["S3_ENDPOINT"],
        access_key=settings["S3_ACCESS_KEY"],
        secret_key=settings["S3_SECRET_KEY"],
        secure=settings["S3_SECURE"] == "true",
    )


def upload(settings: dict[str, str], key: str) -> None:
    s3_client(settings).put_object(
        bucket_name=settings["S3_UPLOAD_BUCKET"], object_name=key, data=io.BytesIO(b"RIFF"), length=4
    )


def wait_for_notification(settings: dict[str, str], key: str) -> dict[str, Any]:
    """The MinIO event for ``key`` read from the input topic (from its beginning)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings["KAFKA_BOOTSTRAP_SERVERS"],
            "group.id": f"t-stack-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings["KAFKA_INPUT_TOPIC"]])
    wanted = f"{settings['S3_UPLOAD_BUCKET']}/{key}".encode()
    deadline = time.monotonic() + NOTIFICATION_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None and message.key() == wanted:
                return json.loads(message.value())
    finally:
        consumer.close()
    raise AssertionError(f"no notification for {key!r} within {NOTIFICATION_TIMEOUT_S:.0f}s")


def assert_created_event(event: dict[str, Any], key: str) -> None:
    assert event["EventName"].startswith("s3:ObjectCreated:")
    encoded = event["Records"][0]["s3"]["object"]["key"]
    assert unquote_plus(encoded) == key
    assert encoded.isascii() and " " not in encoded  # URL-encoded, as S3 events are


def test_status_reports_both_up(settings: dict[str, str]) -> None:
    output = stack("status", "--name", NAME).stdout
    assert "kafka  up" in output and "minio  up" in output


def test_env_has_the_service_settings(settings: dict[str, str]) -> None:
    assert list(settings) == ENV_NAMES
    assert settings["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{PORT_BASE + 2}"
    assert settings["S3_ENDPOINT"] == f"127.0.0.1:{PORT_BASE}"
    assert settings["S3_SECURE"] == "false"
    assert (settings["KAFKA_INPUT_TOPIC"], settings["KAFKA_RESULTS_TOPIC"], settings["KAFKA_DLQ_TOPIC"]) == (
        "audio-uploads",
        "diarization-results",
        "diarization-dlq",
    )
    assert (settings["S3_UPLOAD_BUCKET"], settings["S3_RESULTS_BUCKET"]) == ("audio", "diarization-results")


def test_topics_exist_with_their_partitions(settings: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": settings["KAFKA_BOOTSTRAP_SERVERS"]})
    topics = admin.list_topics(timeout=10).topics
    counts = {
        name: len(topics[name].partitions)
        for name in (settings["KAFKA_INPUT_TOPIC"], settings["KAFKA_RESULTS_TOPIC"], settings["KAFKA_DLQ_TOPIC"])
        if name in topics
    }
    assert counts == {"audio-uploads": 4, "diarization-results": 4, "diarization-dlq": 1}


def test_buckets_exist_and_uploads_notify_kafka(settings: dict[str, str]) -> None:
    client = s3_client(settings)
    assert client.bucket_exists(bucket_name=settings["S3_UPLOAD_BUCKET"])
    assert client.bucket_exists(bucket_name=settings["S3_RESULTS_BUCKET"])
    config = client.get_bucket_notification(bucket_name=settings["S3_UPLOAD_BUCKET"])
    [queue] = config.queue_config_list
    assert (queue.queue, queue.events) == ("arn:minio:sqs::UPLOADS:kafka", ["s3:ObjectCreated:*"])


def test_upload_publishes_an_encoded_notification(settings: dict[str, str]) -> None:
    key = f"meetings/Café meeting {uuid.uuid4().hex[:8]}.wav"
    upload(settings, key)
    event = wait_for_notification(settings, key)
    assert_created_event(event, key)
    assert "%C3%A9" in event["Records"][0]["s3"]["object"]["key"]


def test_start_again_is_a_no_op(settings: dict[str, str]) -> None:
    result = stack("start", "--name", NAME)
    assert "kafka already running" in result.stderr
    assert "minio already running" in result.stderr


def test_notifications_flow_after_minio_restart(settings: dict[str, str]) -> None:
    stack("stop", "--name", NAME, "--only", "minio")
    assert "minio  down" in stack("status", "--name", NAME, expect=3).stdout
    stack("start", "--name", NAME, "--only", "minio")
    stack("status", "--name", NAME)
    key = f"after minio restart {uuid.uuid4().hex[:8]}.wav"
    upload(settings, key)
    assert_created_event(wait_for_notification(settings, key), key)


def test_events_while_kafka_is_down_arrive_after_restart(settings: dict[str, str]) -> None:
    stack("stop", "--name", NAME, "--only", "kafka")
    key = f"while kafka down {uuid.uuid4().hex[:8]}.wav"
    upload(settings, key)  # MinIO keeps the event in its queue dir
    stack("start", "--name", NAME, "--only", "kafka")
    assert_created_event(wait_for_notification(settings, key), key)

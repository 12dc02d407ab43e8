"""The real local Kafka and MinIO for tests and benchmarks, driven through ``local-dev/stack.py``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from minio import Minio
from minio.credentials import StaticProvider
from minio.minioadmin import MinioAdmin

STACK_SCRIPT = Path(__file__).resolve().parents[2] / "local-dev" / "stack.py"
JOBS_POLICY = STACK_SCRIPT.parent / "jobs-policy.json"  # what the shim's credentials need for /v1/jobs
# Kafka's answers while a group's coordinator moves or loads: the commit is retried
COORDINATOR_ERRORS = (
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
)


def stack_cli(*args: str, expect: int = 0, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``local-dev/stack.py``; fail with its output unless it exits with ``expect``."""
    result = subprocess.run(
        [sys.executable, str(STACK_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == expect, (
        f"stack.py {' '.join(args)} exited {result.returncode}, expected {expect}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )
    return result


def parse_env(text: str) -> dict[str, str]:
    """``KEY=value`` lines as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass
class Stack:
    """A running instance of the local stack and clients for it."""

    name: str
    env: dict[str, str]

    @classmethod
    def start(cls, name: str) -> Stack:
        """Install (cached) and start instance ``name`` from scratch."""
        stack_cli("install", timeout=1800)  # a cold MinIO build takes minutes
        stack_cli("destroy", "--name", name)
        stack_cli("start", "--name", name)
        return cls(name, parse_env(stack_cli("env", "--name", name).stdout))

    def stop(self, only: str | None = None) -> None:
        """Stop the instance, or one of its servers."""
        stack_cli("stop", "--name", self.name, *(["--only", only] if only else []))

    def restart(self, only: str) -> None:
        """Start one stopped server of the instance again."""
        stack_cli("start", "--name", self.name, "--only", only)

    def destroy(self) -> None:
        """Stop and delete the instance."""
        stack_cli("destroy", "--name", self.name)

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    def minio(self) -> Minio:
        """A MinIO client with the stack's credentials."""
        return Minio(self.env["S3_ENDPOINT"], self.env["S3_ACCESS_KEY"], self.env["S3_SECRET_KEY"], secure=False)

    def admin(self) -> MinioAdmin:
        """MinIO's admin API with the stack's (root) credentials."""
        credentials = StaticProvider(self.env["S3_ACCESS_KEY"], self.env["S3_SECRET_KEY"])
        return MinioAdmin(endpoint=self.env["S3_ENDPOINT"], credentials=credentials, secure=False)

    def jobs_user(self) -> dict[str, str]:
        """A new MinIO user with nothing but the documented jobs policy: its ``S3_*`` settings."""
        admin = self.admin()
        name, secret = f"jobs-{uuid.uuid4().hex[:8]}", f"secret-{uuid.uuid4().hex}"
        admin.policy_add("diarization-jobs", policy_file=JOBS_POLICY)
        admin.user_add(name, secret)
        admin.attach_policy(["diarization-jobs"], user=name)
        return {"S3_ACCESS_KEY": name, "S3_SECRET_KEY": secret}

    def upload(self, key: str, data: bytes, bucket: str | None = None, metadata: dict[str, str] | None = None) -> str:
        """PUT an object; its etag."""
        bucket = bucket or self.env["S3_UPLOAD_BUCKET"]
        result = self.minio().put_object(bucket, key, io.BytesIO(data), len(data), metadata=metadata)
        return result.etag

    def topics(self, prefix: str, partitions: int = 2) -> dict[str, str]:
        """Fresh input, results and dead-letter topics: ``KAFKA_*_TOPIC`` settings for one test."""
        names = {
            "KAFKA_INPUT_TOPIC": f"{prefix}-in-{uuid.uuid4().hex[:8]}",
            "KAFKA_RESULTS_TOPIC": f"{prefix}-results-{uuid.uuid4().hex[:8]}",
            "KAFKA_DLQ_TOPIC": f"{prefix}-dlq-{uuid.uuid4().hex[:8]}",
        }
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, partitions, 1) for name in names.values()])
        for future in futures.values():
            future.result(30)
        return names

    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers: list | None = None) -> None:
        """Produce one record and wait for its acknowledgement."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        producer.produce(topic, value=value, key=key, headers=headers or [])
        assert producer.flush(30) == 0, "the record was not delivered"

    def move_group_to_end(self, group: str, topic: str) -> None:
        """Commit the end of ``topic`` for ``group``, so that it consumes only what comes next."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        metadata = consumer.list_topics(topic, timeout=10)
        ends = []
        for partition in metadata.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            ends.append(TopicPartition(topic, partition, high))
        deadline = time.monotonic() + 60
        while True:  # a fresh broker's group coordinator loads for a few seconds
            try:
                consumer.commit(offsets=ends, asynchronous=False)
                break
            except KafkaException as exc:
                # the client does not flag a coordinator that is still being found as retriable
                error = exc.args[0]
                if not (error.retriable() or error.code() in COORDINATOR_ERRORS) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        consumer.close()

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The committed offset of ``group`` per partition of ``topic``."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        consumer.close()
        return {tp.partition: tp.offset for tp in offsets}


@dataclass
class ReceivedEvent:
    """A CloudEvent read from Kafka, with its record key and headers."""

    id: str
    type: str
    subject: str | None
    data: Any
    key: bytes | None
    headers: dict[str, bytes]


@dataclass
class TopicReader:
    """Reads every record of a topic from its start, as CloudEvents (or raw, for the DLQ)."""

    bootstrap: str
    topic: str
    events: list[ReceivedEvent] = field(default_factory=list)
    raw: list[tuple[bytes | None, bytes, dict[str, bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
            }
        )
        self._consumer.subscribe([self.topic])

    def drain(self, seconds: float = 0.5) -> None:
        """Read what arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None or message.error():
                continue
            headers = dict(message.headers() or [])
            self.raw.append((message.key(), message.value(), headers))
            if any(name.startswith("ce_") for name in headers):
                event = ce_kafka.from_binary(
                    ce_kafka.KafkaMessage(headers, message.key(), message.value()), JSONFormat()
                )
                self.events.append(
                    ReceivedEvent(
                        event.get_id(), event.get_type(), event.get_subject(), event.get_data(), message.key(), headers
                    )
                )

    def wait_for(
        self, condition: Callable[[list[ReceivedEvent]], bool], timeout: float, what: str
    ) -> list[ReceivedEvent]:
        """Read until ``condition(events)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain(0.5)
            if condition(self.events):
                return self.events
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for {what}; got {[(e.type, e.subject) for e in self.events]}"
        )

    def close(self) -> None:
        self._consumer.close()


def results_for(events: list[ReceivedEvent], input_id: str) -> list[ReceivedEvent]:
    """Completed and failed events answering the input ``input_id``."""
    return [e for e in events if not e.type.endswith(".progress") and e.data["input"]["id"] == input_id]


def cloudevent_headers(
    event_id: str, data_type: str = "dev.diarization.audio.uploaded", **extra: str
) -> list[tuple[str, bytes]]:
    """Headers of a binary-mode Kafka CloudEvent (the data goes in the value)."""
    attributes = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": "/tests",
        "ce_type": data_type,
        "content-type": "application/json",
        **extra,
    }
    return [(k, v.encode()) for k, v in attributes.items()]


def structured_cloudevent(event_id: str, data: dict[str, Any]) -> bytes:
    """A structured-mode CloudEvent."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "/tests",
            "type": "dev.diarization.audio.uploaded",
            "datacontenttype": "application/json",
            "data": data,
        }
    ).encode()

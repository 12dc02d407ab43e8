"""The integration tier runs against the real local stack, started for the session."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port, start_module, stop, wait_http
from tests.support.stack import Stack, TopicReader


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Kafka and MinIO on loopback, as ``local-dev/stack.py`` starts them (instance ``test``)."""
    running = Stack.start("test")
    try:
        yield running
    finally:
        running.destroy()


@dataclass
class ConsumerProcess:
    """A ``diarization-consumer`` process under test."""

    process: subprocess.Popen
    env: dict[str, str]
    log: Path
    probe: str

    @property
    def group(self) -> str:
        return self.env["KAFKA_GROUP_ID"]

    def metric(self, name: str) -> float:
        """The sum of a Prometheus metric's samples whose line starts with ``name``."""
        text = requests.get(f"{self.probe}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def log_lines(self) -> str:
        return self.log.read_text()


@pytest.fixture
def start_consumer(stack: Stack, settings, tmp_path: Path) -> Iterator[Callable[..., ConsumerProcess]]:
    """Start consumers with the stack's settings plus overrides; all are stopped afterwards."""
    started: list[ConsumerProcess] = []

    def start(env: dict[str, str], group: str | None = None, name: str = "consumer") -> ConsumerProcess:
        port = free_port()
        full_env = {
            **stack.env,
            "DIARIZATION_MODEL": settings.engine.model,
            "KAFKA_GROUP_ID": group or f"it-{uuid.uuid4().hex[:8]}",
            "CONSUMER_PROBE_PORT": str(port),
            "RETRY_BACKOFF_MAX_SECONDS": "2",
            "SHUTDOWN_GRACE_SECONDS": "120",
            **env,
        }
        log = tmp_path / f"{name}-{len(started)}.log"
        process = start_module("consumer.kafka_worker", full_env, log)
        consumer = ConsumerProcess(process, full_env, log, f"http://127.0.0.1:{port}")
        started.append(consumer)
        wait_http(f"{consumer.probe}/ready", process, timeout=300, log=log)
        return consumer

    yield start
    for consumer in started:
        stop(consumer.process)


@pytest.fixture
def reader(stack: Stack) -> Iterator[Callable[[str], TopicReader]]:
    """Readers of topics from their start; closed after the test."""
    readers: list[TopicReader] = []

    def open_reader(topic: str) -> TopicReader:
        readers.append(TopicReader(stack.bootstrap, topic))
        return readers[-1]

    yield open_reader
    for topic_reader in readers:
        topic_reader.close()

"""The integration tier runs against the real local stack (the session's ``stack`` fixture, tests/conftest.py)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import ConsumerProcess, free_port, start_module, stop, wait_http
from tests.support.stack import Stack, TopicReader


@pytest.fixture
def start_consumer(stack: Stack, settings, tmp_path: Path) -> Iterator[Callable[..., ConsumerProcess]]:
    """Start consumers with the stack's settings plus overrides; all are stopped afterwards."""
    started: list[ConsumerProcess] = []

    def start(
        env: dict[str, str], group: str | None = None, name: str = "consumer", module: str = "consumer.kafka_worker"
    ) -> ConsumerProcess:
        """``module`` runs the consumer; a test may name a wrapper that injects a fault."""
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
        process = start_module(module, full_env, log)
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


@pytest.fixture
def start_shim(stack: Stack, settings, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start HTTP shims with the stack's S3 settings plus overrides; their base URLs."""
    processes: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        port = free_port()
        log = tmp_path / f"shim-{len(processes)}.log"
        process = start_module(
            "http_shim.server",
            {**stack.env, "PORT": str(port), "HOST": "127.0.0.1", "DIARIZATION_MODEL": settings.engine.model, **env},
            log,
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/ready", process, timeout=300, log=log)
        return base

    yield start
    for process in processes:
        stop(process)

"""The integration tier runs against the real local stack (the session's ``stack`` fixture, tests/conftest.py)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.engine.identity import make_voiceprint
from consumer.options import JobOptions
from tests.support.conversation import ENROLMENT_TEXT, VOICES, speak
from tests.support.credentials import RECEIVER_TOKEN
from tests.support.faults import Inputs, Scenario
from tests.support.processes import ConsumerProcess, free_port, shim_env, start_module, stop, wait_http
from tests.support.spoken_words import SpokenSentence, spoken_conversation
from tests.support.stack import Stack, TopicReader


@pytest.fixture
def start_consumer(stack: Stack, settings, tmp_path: Path) -> Iterator[Callable[..., ConsumerProcess]]:
    """Start consumers with the stack's settings plus overrides; all are stopped afterwards."""
    started: list[ConsumerProcess] = []

    def start(
        env: dict[str, str], group: str | None = None, name: str = "consumer", module: str = "consumer.kafka.worker"
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
def scenario(stack: Stack, start_consumer, reader) -> Callable[..., Scenario]:
    """Fault scenarios: ``scenario(name, partitions)`` gives fresh topics, a group, inputs, and
    consumers started on them (``Scenario.consumer``); ``Scenario.check`` asserts the outcome."""

    def make(name: str, partitions: int = 2) -> Scenario:
        topics = stack.topics(name, partitions)
        inputs = Inputs(stack, topics["KAFKA_INPUT_TOPIC"], name)
        return Scenario(stack, topics, f"it-{name}-{uuid.uuid4().hex[:6]}", inputs, start_consumer, reader)

    return make


class Shims:
    """Start HTTP shims with the stack's S3 settings plus overrides (``shims(**env)``: the base
    URL), stop one (``shims.stop(base)``); all are stopped after the test."""

    def __init__(self, stack: Stack, model: str, logs: Path) -> None:
        self.stack, self.model, self.logs = stack, model, logs
        self.processes: dict[str, subprocess.Popen] = {}

    def __call__(self, **env: str) -> str:
        """As the cluster-local events Service runs it: the receiver on, checking senders (the
        tests' shared token unless ``env`` configures the check), the API behind its key."""
        port = free_port()
        log = self.logs / f"shim-{len(self.processes)}.log"
        checks = {"RECEIVER_TOKEN", "RECEIVER_OIDC_ISSUER", "RECEIVER_AUTH"}
        defaults = {"RECEIVER_ENABLED": "true"}
        if not checks & set(env):
            defaults["RECEIVER_TOKEN"] = RECEIVER_TOKEN
        process = start_module(
            "http_shim.server", {**self.stack.env, **shim_env(self.model, port, **{**defaults, **env})}, log
        )
        base = f"http://127.0.0.1:{port}"
        self.processes[base] = process
        wait_http(f"{base}/ready", process, timeout=300, log=log)
        return base

    def stop(self, base: str) -> None:
        stop(self.processes[base])


@pytest.fixture
def start_shim(stack: Stack, settings, tmp_path: Path) -> Iterator[Shims]:
    """``Shims`` of this test."""
    shims = Shims(stack, settings.engine.model, tmp_path)
    yield shims
    for process in shims.processes.values():
        stop(process)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> tuple[Path, tuple[SpokenSentence, ...]]:
    """A generated meeting whose every word is known: its WAV and its sentences."""
    wav = tmp_path_factory.mktemp("spoken") / "meeting.wav"
    return wav, spoken_conversation(wav)


@pytest.fixture(scope="module")
def voiceprints(engine) -> dict[str, dict]:
    """Voices 0 and 1 enrolled (voice 2 of the conversation never is), made with the engine itself."""
    prints = {}
    for name, voice in (("ada", VOICES[0]), ("grace", VOICES[1])):
        result = engine.run(speak(voice, ENROLMENT_TEXT), 16_000, JobOptions())
        prints[name] = make_voiceprint(result, engine.embedding_model).to_dict()
    return prints

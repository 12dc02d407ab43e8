"""Scaling the consumer group while a long job runs: the job is answered once, and no
commit moves an offset backwards (cooperative-sticky assignment, attempt-marker leases)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from tests.support.conversation import conversation
from tests.support.stack import cloudevent_headers, results_for

pytestmark = pytest.mark.integration


class CommitWatch:
    """Samples a group's committed offsets twice a second and keeps every change."""

    def __init__(self, stack, group: str, topic: str) -> None:
        self.history: list[dict[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stack, group, topic), daemon=True)
        self._thread.start()

    def _run(self, stack, group: str, topic: str) -> None:
        while not self._stop.wait(0.5):
            committed = stack.committed(group, topic)
            if not self.history or committed != self.history[-1]:
                self.history.append(committed)

    def stop(self) -> list[dict[int, int]]:
        self._stop.set()
        self._thread.join(10)
        return self.history

    def backwards(self) -> list[str]:
        """Every change that lowered a partition's committed offset."""
        moves = []
        for before, after in zip(self.history, self.history[1:], strict=False):
            for partition, offset in after.items():
                if offset < before.get(partition, -1001):
                    moves.append(f"partition {partition}: {before[partition]} -> {offset}")
        return moves


def _send(stack, topic: str, partition: int, event_id: str, audio: bytes) -> str:
    key = f"rebalance/{uuid.uuid4().hex[:8]}/{event_id}.wav"
    stack.upload(key, audio)
    producer = Producer({"bootstrap.servers": stack.bootstrap, "acks": "all"})
    data = json.dumps({"bucket": stack.env["S3_UPLOAD_BUCKET"], "key": key}).encode()
    producer.produce(topic, value=data, key=key.encode(), headers=cloudevent_headers(event_id), partition=partition)
    assert producer.flush(30) == 0
    return key


def test_a_consumer_joining_during_a_long_job_leaves_it_one_answer_and_no_offset_moves_back(
    stack, start_consumer, reader
):
    topics = stack.topics("rebalance", partitions=2)
    topic = topics["KAFKA_INPUT_TOPIC"]
    group = f"rebalance-{uuid.uuid4().hex[:6]}"
    long_talk = conversation(num_speakers=3, duration=240, seed=5).wav.read_bytes()
    short_talk = conversation(num_speakers=2, duration=12, seed=101).wav.read_bytes()
    # each 60 s region's embedding pass waits 15 s: the 240 s job runs for over a minute,
    # however fast the machine, so the second consumer joins while it runs
    first = start_consumer(
        {**topics, "SLOW_EMBEDDING_SECONDS": "15"}, group, name="first", module="tests.support.slow_consumer"
    )
    watch = CommitWatch(stack, group, topic)
    # partition 0: the one cooperative-sticky hands to a joining member (the lowest-numbered
    # of the busiest member's), so the job's partition moves while it runs: the hard case
    _send(stack, topic, 0, "long-1", long_talk)
    deadline = time.monotonic() + 120
    while first.metric("diarization_jobs_in_flight") < 1:
        assert time.monotonic() < deadline, f"the long job never started:\n{first.log_tail()}"
        time.sleep(0.2)
    second = start_consumer(topics, group, name="second")
    assert first.metric("diarization_jobs_in_flight") == 1, "the long job ended before the second consumer joined"
    for partition in (0, 1):
        _send(stack, topic, partition, f"short-{partition}", short_talk)
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    inputs = ["long-1", "short-0", "short-1"]
    results.wait_for(lambda ev: all(results_for(ev, i) for i in inputs), 600, "an answer to every input")
    deadline = time.monotonic() + 60
    while stack.committed(group, topic) != {0: 2, 1: 1} and time.monotonic() < deadline:
        time.sleep(0.5)
    results.drain(5)
    history = watch.stop()
    logs = f"\n--- first\n{first.log_tail(3000)}\n--- second\n{second.log_tail(3000)}"
    answers = results_for(results.events, "long-1")
    assert [a.type for a in answers] == ["dev.diarization.job.completed"], f"{answers}{logs}"
    assert not answers[0].data["reused"], "the long job was answered from a second run's reuse"
    for event_id in ("short-0", "short-1"):
        assert [a.type for a in results_for(results.events, event_id)] == ["dev.diarization.job.completed"]
    assert first.metric('kafka_rebalances_total{kind="revoked"}') >= 1, f"no partition moved{logs}"
    assert second.metric('kafka_messages_total{outcome="answered_elsewhere"}') == 1, logs
    computed = sum(c.metric('diarization_jobs_total{outcome="completed",task="diarization"}') for c in (first, second))
    assert computed == 3, f"{computed} jobs computed for 3 inputs{logs}"
    assert not watch.backwards(), f"commits moved offsets backwards: {watch.backwards()} in {history}"
    assert history[-1] == {0: 2, 1: 1}, f"committed offsets {history}{logs}"
    print(f"REBALANCE FIGURES commit_history={history}", flush=True)

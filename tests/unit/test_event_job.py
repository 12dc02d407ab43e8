"""Pure parts of the event doors: what a stored result is keyed by, and the receiver's dedup window."""

from __future__ import annotations

import time

from consumer.config import EngineSettings, ReceiverSettings, Secret, Settings
from consumer.event_job import result_digest
from consumer.events import ObjectRef
from consumer.options import JobOptions, Task
from http_shim.receiver import Receiver, _Delivery

SOURCE = ObjectRef("audio", "calls/a.wav", None, "etag-1", 1000)


def test_result_digest_follows_the_object_version_the_options_and_the_model():
    def digest(
        source: ObjectRef = SOURCE, options: JobOptions = JobOptions(num_speakers=2), fingerprint: str = "f1"
    ) -> str:
        return result_digest(source, options, "offline-default", fingerprint)

    base = digest()
    assert base == digest()
    assert len(base) == 32 and int(base, 16) >= 0
    # diarization implies VAD: the same job, however the tasks were written
    assert result_digest(SOURCE, JobOptions(tasks=frozenset({Task.DIARIZATION, Task.VAD})), "m", "f") == (
        result_digest(SOURCE, JobOptions(), "m", "f")
    )
    others = {
        digest(options=JobOptions(num_speakers=3)),
        digest(options=JobOptions(num_speakers=2, exclusive=True)),
        digest(options=JobOptions(tasks=frozenset({Task.VAD}))),
        result_digest(SOURCE, JobOptions(num_speakers=2), "pyannote/speaker-diarization-3.1", "f1"),
        digest(fingerprint="f2"),  # same model name, other content
        digest(ObjectRef("audio", "calls/a.wav", None, "etag-2", 1000)),
        digest(ObjectRef("audio", "calls/a.wav", "v2", "etag-1", 1000)),
        digest(ObjectRef("audio-b", "calls/a.wav", None, "etag-1", 1000)),
        digest(ObjectRef("audio", "calls/b.wav", None, "etag-1", 1000)),
    }
    assert base not in others and len(others) == 9


def _receiver(window: float) -> Receiver:
    settings = Settings(
        engine=EngineSettings(model="m"), receiver=ReceiverSettings(dedup_window_seconds=window, token=Secret("t"))
    )
    return Receiver(event_job=None, settings=settings)  # type: ignore[arg-type]  # eviction never touches the job


def _delivery(name: str, age: float, done: bool) -> _Delivery:
    delivery = _Delivery(("s", name, "digest"), created=time.monotonic() - age)
    if done:
        delivery.done.set()
    return delivery


def _fill(receiver: Receiver, *deliveries: _Delivery) -> None:
    for delivery in deliveries:
        receiver._deliveries[delivery.key] = delivery


def test_dedup_window_drops_finished_entries_older_than_the_window():
    receiver = _receiver(window=60)
    _fill(receiver, _delivery("old", age=120, done=True), _delivery("new", age=1, done=True))
    receiver._evict()
    assert [key[1] for key in receiver._deliveries] == ["new"]


def test_dedup_window_skips_a_running_job_and_evicts_what_finished_behind_it():
    receiver = _receiver(window=60)
    _fill(
        receiver,
        _delivery("running", age=120, done=False),
        _delivery("finished", age=120, done=True),
        _delivery("young", age=1, done=True),
    )
    receiver._evict()
    # a job stuck on retries must not pin the window: only it stays of the old entries
    assert [key[1] for key in receiver._deliveries] == ["running", "young"]

"""The receiver's bookkeeping with a scripted job core (the real one runs in tests/integration):
the dedup window's bound, multi-record answers, and what happens to accepted work at shutdown."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from consumer.analyzer import Reservation
from consumer.config import Settings
from consumer.errors import BusyError, StorageUnavailableError
from consumer.events import AudioJobRequested, DiarizationCompleted, JobOutcome
from consumer.retry import Backoff
from http_shim.receiver import MAX_DEDUP_ENTRIES, MAX_KEPT_RESULT_BYTES, Receiver
from tests.support.credentials import RECEIVER_TOKEN
from tests.support.dense_result import dense_completed
from tests.support.knative_delivery import is_binary_cloudevent
from tests.support.sink import EventSink

FAST = Backoff(max_seconds=0.05, base_seconds=0.01, tick_seconds=0.01)


class ScriptedJobs:
    """``EventJob``'s two methods: each object key runs the script given for it (default: completes)."""

    def __init__(self, slots: int = 1_000_000) -> None:
        self.scripts: dict[str, Callable[[AudioJobRequested], JobOutcome]] = {}
        self.calls: dict[str, int] = {}
        self.slots = slots
        self._guard = threading.Lock()

    def reserve(self) -> Reservation:
        with self._guard:
            if self.slots == 0:
                raise BusyError("no free slot")
            self.slots -= 1

        def release() -> None:
            with self._guard:
                self.slots += 1

        return Reservation(release)

    def handle(self, request: AudioJobRequested, reservation: Reservation | None = None) -> JobOutcome:
        held = reservation or self.reserve()
        try:
            with self._guard:
                self.calls[request.object.key] = self.calls.get(request.object.key, 0) + 1
            script = self.scripts.get(request.object.key, completed)
            return script(request)
        finally:
            held.release()


def completed(request: AudioJobRequested) -> JobOutcome:
    key = request.object.key
    results = {"bucket": "diarization-results", "json": f"results/{key}.json", "rttm": f"results/{key}.rttm"}
    return DiarizationCompleted(request, {"segments": [], "num_speakers": 0, "results": results})


def slowly(request: AudioJobRequested) -> JobOutcome:
    time.sleep(0.2)  # still running when RECEIVER_ASYNC answers: detached, so the sink is its only way out
    return completed(request)


def always_down(request: AudioJobRequested) -> JobOutcome:
    time.sleep(0.1)  # a failure before the answer would be answered 503 (nothing accepted yet)
    raise StorageUnavailableError("the store is down")


def receiver_with(jobs: ScriptedJobs, max_entries: int = MAX_DEDUP_ENTRIES, **env: str) -> Receiver:
    settings = Settings.from_env({"RECEIVER_TOKEN": RECEIVER_TOKEN, **env})
    return Receiver(jobs, settings, backoff=FAST, max_entries=max_entries)  # type: ignore[arg-type]


def event(event_id: str, key: str = "a.wav") -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/tests",
        "ce-type": "dev.diarization.audio.uploaded",
        "Content-Type": "application/json",
    }
    return headers, json.dumps({"bucket": "audio", "key": key}).encode()


def notification(*keys: str) -> tuple[dict[str, str], bytes]:
    records = [
        {
            "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "audio"}, "object": {"key": key, "sequencer": f"S{index}"}},
        }
        for index, key in enumerate(keys)
    ]
    return {"Content-Type": "application/json"}, json.dumps(
        {"EventName": "s3:ObjectCreated:Put", "Records": records}
    ).encode()


@pytest.fixture
def app() -> Iterator[Flask]:
    flask_app = Flask(__name__)
    with flask_app.app_context():
        yield flask_app


def answer(receiver: Receiver, message: tuple[dict[str, str], bytes]):
    response = receiver.receive(*message)
    if 200 <= response.status_code < 300:  # Knative's dispatcher takes nothing else
        assert response.get_data() == b"" or is_binary_cloudevent(dict(response.headers)), response.get_data()[:200]
    return response


def undelivered() -> float:
    return REGISTRY.get_sample_value("diarization_results_undelivered_total") or 0.0


def test_the_window_stays_bounded_at_its_default_while_its_oldest_job_never_finishes(app: Flask) -> None:
    jobs = ScriptedJobs()
    jobs.scripts["stuck.wav"] = always_down
    receiver = receiver_with(jobs, RECEIVER_ASYNC="true")
    assert answer(receiver, event("stuck", "stuck.wav")).status_code == 202  # accepted, retried in place
    before = undelivered()
    for index in range(MAX_DEDUP_ENTRIES + 500):
        response = answer(receiver, (event(f"bad-{index}")[0], b'{"bucket": "audio"}'))  # a failed reply
        assert response.status_code == 200
        assert receiver.entries <= MAX_DEDUP_ENTRIES
    assert receiver.entries == MAX_DEDUP_ENTRIES
    # the stuck job is still in the window: a redelivery finds it instead of starting it again
    assert answer(receiver, event("stuck", "stuck.wav")).status_code == 202
    assert jobs.calls["stuck.wav"] >= 2
    receiver.shutdown()  # it gives up, logged and counted
    deadline = time.monotonic() + 5
    while undelivered() == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert undelivered() == before + 1


def test_a_window_full_of_running_jobs_answers_busy(app: Flask) -> None:
    jobs = ScriptedJobs()
    release = threading.Event()

    def blocked(request: AudioJobRequested) -> JobOutcome:
        release.wait(10)
        return completed(request)

    jobs.scripts["slow.wav"] = blocked
    receiver = receiver_with(jobs, max_entries=3, RECEIVER_ASYNC="true")
    for index in range(3):
        assert answer(receiver, event(f"slow-{index}", "slow.wav")).status_code == 202
    full = answer(receiver, event("one-more", "slow.wav"))
    assert full.status_code == 503 and full.get_json()["error"]["code"] == "busy"
    release.set()
    deadline = time.monotonic() + 5
    while answer(receiver, event("one-more", "slow.wav")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.01)  # taken once a finished job's entry can make room
    assert receiver.entries == 3 and ("/tests", "slow-0") not in {key[:2] for key in receiver._deliveries}


def test_same_id_other_data_is_not_a_duplicate(app: Flask) -> None:
    jobs = ScriptedJobs()
    receiver = receiver_with(jobs)
    first = answer(receiver, event("e-1", "a.wav"))
    forged = answer(receiver, event("e-1", "b.wav"))
    assert json.loads(first.get_data())["results"]["json"] == "results/a.wav.json"
    assert json.loads(forged.get_data())["results"]["json"] == "results/b.wav.json"
    again = answer(receiver, event("e-1", "a.wav"))
    assert again.get_data() == first.get_data() and jobs.calls == {"a.wav": 1, "b.wav": 1}


def test_multi_record_is_503_while_any_record_is_transient_and_done_records_are_not_rerun(app: Flask) -> None:
    sink = EventSink()
    try:
        jobs = ScriptedJobs()
        flaky = iter([True, True])

        def transient_twice(request: AudioJobRequested) -> JobOutcome:
            if next(flaky, False):
                raise StorageUnavailableError("the store hiccuped")
            return completed(request)

        jobs.scripts["two.wav"] = transient_twice
        receiver = receiver_with(jobs, K_SINK=sink.url)
        message = notification("one.wav", "two.wav", "three.wav")
        statuses = [answer(receiver, message).status_code for _ in range(3)]
        assert statuses == [503, 503, 202]
        assert jobs.calls == {"one.wav": 1, "two.wav": 3, "three.wav": 1}
        subjects = sorted(event.headers["ce-subject"] for event in sink.accepted)
        assert subjects == ["audio/one.wav", "audio/three.wav", "audio/two.wav"]  # each sent once
    finally:
        sink.close()


def test_multi_record_with_one_record_busy_is_503_and_the_retry_completes_it(app: Flask) -> None:
    sink = EventSink()
    try:
        jobs = ScriptedJobs(slots=2)

        def slow(request: AudioJobRequested) -> JobOutcome:
            time.sleep(0.3)  # holds its slot while the next record asks for one
            return completed(request)

        jobs.scripts["one.wav"] = jobs.scripts["two.wav"] = slow
        receiver = receiver_with(jobs, K_SINK=sink.url)
        message = notification("one.wav", "two.wav", "three.wav")
        first = answer(receiver, message)
        assert first.status_code == 503 and first.get_json()["error"]["code"] == "busy"
        deadline = time.monotonic() + 5
        while (status := answer(receiver, message).status_code) != 202 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert status == 202
        assert jobs.calls == {"one.wav": 1, "two.wav": 1, "three.wav": 1}
        assert len(sink.accepted) == 3
    finally:
        sink.close()


def test_a_result_the_sink_refuses_is_retried_until_shutdown_then_logged_with_its_objects(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    sink = EventSink(status=503)
    try:
        jobs = ScriptedJobs()
        jobs.scripts["kept.wav"] = slowly
        receiver = receiver_with(jobs, K_SINK=sink.url, RECEIVER_ASYNC="true")
        before = undelivered()
        assert answer(receiver, event("r-1", "kept.wav")).status_code == 202
        sink.wait_for(5, 10)  # retried, not dropped after a while
        assert undelivered() == before
        with caplog.at_level(logging.ERROR, logger="http_shim.receiver"):
            receiver.shutdown()
            deadline = time.monotonic() + 5
            while undelivered() == before and time.monotonic() < deadline:
                time.sleep(0.01)
        assert undelivered() == before + 1
        [record] = [r for r in caplog.records if "the sink never took" in r.getMessage()]
        assert record.results == {  # type: ignore[attr-defined]
            "bucket": "diarization-results",
            "json": "results/kept.wav.json",
            "rttm": "results/kept.wav.rttm",
        }
        assert sink.accepted == []
    finally:
        sink.close()


def test_a_sink_that_comes_back_gets_the_result(app: Flask) -> None:
    sink = EventSink(status=503)
    try:
        jobs = ScriptedJobs()
        jobs.scripts["later.wav"] = slowly
        receiver = receiver_with(jobs, K_SINK=sink.url, RECEIVER_ASYNC="true")
        assert answer(receiver, event("r-2", "later.wav")).status_code == 202
        sink.wait_for(3, 10)
        sink.status = 202
        deadline = time.monotonic() + 5
        while not sink.accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.headers["ce-subject"] for e in sink.accepted] == ["audio/later.wav"]
    finally:
        sink.close()


def test_a_dense_four_hour_result_reaches_a_sink_that_refuses_bodies_over_1_mib(app: Flask) -> None:
    """The receiver follows the Kafka door's size rule (codec.fitted): a summary, not a retry loop."""
    dense = dense_completed(12_500)
    assert len(json.dumps(dense.document)) > 1024 * 1024  # every segment would not fit
    jobs = ScriptedJobs()
    jobs.scripts["long/4h-meeting.wav"] = lambda request: DiarizationCompleted(request, dense.document)
    sink = EventSink(max_body=1024 * 1024)
    try:
        receiver = receiver_with(jobs, K_SINK=sink.url)
        assert answer(receiver, event("dense-1", "long/4h-meeting.wav")).status_code == 202
        [delivered] = sink.accepted
        data = json.loads(delivered.body)
        assert len(delivered.body) <= 1024 * 1024 and "segments" not in data
        assert data["summary"]["segments"] == 12_500 and data["results"] == dense.document["results"]
        # and as the reply to a Broker (no sink): the same rule
        replied = answer(receiver_with(jobs), event("dense-2", "long/4h-meeting.wav"))
        assert replied.status_code == 200 and json.loads(replied.get_data())["summary"]["segments"] == 12_500
    finally:
        sink.close()


def test_the_window_keeps_results_within_its_byte_bound(app: Flask) -> None:
    """Large results leave the window early; a duplicate of one is run again (from its stored result)."""
    big = dense_completed(9_000).document  # fits a result event whole: about 0.9 MB kept each
    jobs = ScriptedJobs()
    receiver = receiver_with(jobs)
    for index in range(100):
        key = f"big-{index}.wav"
        jobs.scripts[key] = lambda request, document=big: DiarizationCompleted(request, document)
        assert answer(receiver, event(f"big-{index}", key)).status_code == 200
        assert receiver._kept_bytes <= MAX_KEPT_RESULT_BYTES + 1024 * 1024
    assert receiver.entries < 100
    assert answer(receiver, event("big-0", "big-0.wav")).status_code == 200
    assert jobs.calls["big-0.wav"] == 2  # left the window: answered again, not from memory
    assert answer(receiver, event("big-99", "big-99.wav")).status_code == 200
    assert jobs.calls["big-99.wav"] == 1  # still in the window

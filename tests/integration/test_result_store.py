"""The object store's result objects on the real MinIO: one run's JSON and RTTM always match,
reuse is pinned to the object's etag, and a download is pinned to the etag its stat saw."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from typing import Any

import pytest

from consumer.config import Secret, StorageSettings
from consumer.engine import EngineResult, SpeakerTurn, SpeechRegion
from consumer.errors import ObjectChangedError
from consumer.event_job import result_digest
from consumer.events import InputRef, ObjectRef, ResultLocation
from consumer.formats import result_document, rttm_uri, to_rttm
from consumer.options import JobOptions
from consumer.storage import ObjectStore

pytestmark = pytest.mark.integration


def _store(stack, client: Any = None) -> ObjectStore:
    env = stack.env
    settings = StorageSettings(
        endpoint=env["S3_ENDPOINT"],
        access_key=Secret(env["S3_ACCESS_KEY"]),
        secret_key=Secret(env["S3_SECRET_KEY"]),
        results_bucket=env["S3_RESULTS_BUCKET"],
    )
    return ObjectStore(settings, client)


def _run(speakers: int, seed: int) -> EngineResult:
    """A result unlike the other runs': its own number of turns and speakers."""
    turns = tuple(SpeakerTurn(seed + i * 1.5, seed + i * 1.5 + 1.0, f"SPEAKER_{i % speakers:02d}") for i in range(seed))
    return EngineResult(turns, (SpeechRegion(0.0, seed * 2.0),), speakers, seed * 2.0, 0.1)


def _write(store: ObjectStore, source: ObjectRef, digest: str, result: EngineResult) -> ResultLocation:
    location = store.locate(source, digest)
    document = result_document(
        InputRef(f"run-{uuid.uuid4().hex[:6]}", "/tests", "t"), source, JobOptions(), result, "m", location
    )
    store.write_result(location, document, to_rttm(result, rttm_uri(source.key)))
    return location


def _stored_pair(stack, json_key: str) -> tuple[dict, str]:
    minio = stack.minio()
    document = json.loads(minio.get_object(stack.env["S3_RESULTS_BUCKET"], json_key).read())
    rttm = minio.get_object(stack.env["S3_RESULTS_BUCKET"], document["results"]["rttm"]).read().decode()
    return document, rttm


def _assert_pair_matches(document: dict, rttm: str) -> None:
    lines = rttm.splitlines()
    assert len(lines) == len(document["segments"]), f"{len(lines)} RTTM lines, {len(document['segments'])} segments"
    for line, segment in zip(lines, document["segments"], strict=True):
        fields = line.split()
        assert (float(fields[3]), fields[7]) == (segment["start"], segment["speaker"]), (line, segment)


def _source(stack) -> ObjectRef:
    key = f"store/{uuid.uuid4().hex[:8]}/x.wav"
    etag = stack.upload(key, b"RIFF-not-really-audio")
    return ObjectRef(stack.env["S3_UPLOAD_BUCKET"], key, None, etag.strip('"'), 21)


class _HoldsJson:
    """A MinIO client whose JSON PUTs wait until ``release`` is set: run A on it writes its
    RTTM, then waits while run B writes both of its objects, then writes its JSON."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.release = threading.Event()
        self.holding = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, bucket: str, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith(".json"):
            self.holding.set()
            assert self.release.wait(30), "run B never finished"
        return self._client.put_object(bucket, key, *args, **kwargs)


def test_two_interleaved_runs_leave_a_json_and_rttm_of_one_run(stack):
    plain = _store(stack)
    source = _source(stack)
    digest = result_digest(source, JobOptions(), "m", "fingerprint")
    held = _HoldsJson(plain.client)
    slow = _store(stack, held)
    first = threading.Thread(target=_write, args=(slow, source, digest, _run(2, 3)), name="run-a")
    first.start()
    assert held.holding.wait(30), "run A never reached its JSON"
    second = _write(plain, source, digest, _run(3, 7))  # run B: both objects, between A's two
    held.release.set()
    first.join(30)
    document, rttm = _stored_pair(stack, second.json_key)
    assert len(document["segments"]) == 3, "run A's JSON must be the last one written"
    _assert_pair_matches(document, rttm)
    assert plain.find_result(second) == document


def test_many_concurrent_runs_leave_a_matching_pair(stack):
    store = _store(stack)
    source = _source(stack)
    digest = result_digest(source, JobOptions(), "m", "fingerprint")
    runs = [threading.Thread(target=_write, args=(store, source, digest, _run(2, n))) for n in range(1, 9)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    json_key = store.locate(source, digest).json_key
    _assert_pair_matches(*_stored_pair(stack, json_key))


def test_reuse_needs_the_same_etag_and_digest(stack):
    store = _store(stack)
    source = _source(stack)
    digest = result_digest(source, JobOptions(), "m", "fingerprint")
    location = _write(store, source, digest, _run(2, 4))
    assert store.find_result(location) is not None
    assert store.find_result(replace(location, source_etag="")) is None  # no etag: nothing is reused
    assert store.find_result(replace(location, source_etag="0" * 32)) is None
    assert store.find_result(replace(location, digest="f" * 32)) is None


def test_the_download_is_pinned_to_the_etag_of_the_stat(stack):
    store = _store(stack)
    source = store.stat(_source(stack))
    with store.open(source, 1000) as audio:
        assert audio.read() == b"RIFF-not-really-audio"
    stack.upload(source.key, b"RIFF-replaced-by-a-newer-upload")
    with pytest.raises(ObjectChangedError), store.open(source, 1000):
        pass
    with store.open(store.stat(source), 1000) as audio:
        assert audio.read() == b"RIFF-replaced-by-a-newer-upload"

"""Reading a stored result: a connection reset mid-read is a retryable service fault, never
the input's; a corrupt or foreign document is computed again. The client is a stand-in that
answers as minio-py does (the mapping is pure logic; the real store is in the integration tier)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3

from consumer.config import StorageSettings
from consumer.engine import EngineResult, SpeakerTurn, SpeechRegion
from consumer.errors import StorageUnavailableError
from consumer.events import InputRef, ObjectRef
from consumer.formats import result_document
from consumer.options import JobOptions
from consumer.storage import RESULT_DIGEST, SOURCE_ETAG, ObjectStore

SOURCE = ObjectRef("audio", "calls/a.wav", None, "etag-1", 1000)
DIGEST = "0" * 32


class _Response:
    def __init__(self, body: bytes, headers: dict[str, str], reset: bool = False) -> None:
        self.headers = headers
        self._body, self._reset = body, reset

    def read(self) -> bytes:
        if self._reset:
            raise urllib3.exceptions.ProtocolError("Connection broken: ConnectionResetError(104)")
        return self._body

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class _Client:
    def __init__(self, response: _Response) -> None:
        self.response = response

    def get_object(self, *args: Any, **kwargs: Any) -> _Response:
        return self.response


def _store(body: bytes, reset: bool = False, etag: str = "etag-1") -> tuple[ObjectStore, Any]:
    headers = {f"x-amz-meta-{SOURCE_ETAG}": etag, f"x-amz-meta-{RESULT_DIGEST}": DIGEST}
    store = ObjectStore(StorageSettings(), _Client(_Response(body, headers, reset)))  # type: ignore[arg-type]
    return store, store.locate(SOURCE, DIGEST)


def _document(location) -> bytes:
    result = EngineResult((SpeakerTurn(0.5, 2.0, "SPEAKER_00"),), (SpeechRegion(0.5, 2.0),), 1, 3.0, 0.3)
    document = result_document(InputRef("e", "/s", "t"), SOURCE, JobOptions(), result, "m", location)
    return json.dumps(document).encode()


def test_a_sound_stored_result_is_reused():
    store, location = _store(b"")
    store.client.response._body = _document(location)
    found = store.find_result(location)
    assert found is not None and found["segments"] == [{"start": 0.5, "end": 2.0, "speaker": "SPEAKER_00"}]


def test_a_connection_reset_while_reading_a_stored_result_is_retryable_and_marks_the_store_failing():
    store, location = _store(b"", reset=True)
    with pytest.raises(StorageUnavailableError) as raised:
        store.find_result(location)
    assert raised.value.retryable and "ConnectionResetError" in raised.value.message
    assert store.health.failure is raised.value


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda good: good[: len(good) // 2],  # truncated
        lambda good: b"",
        lambda good: json.dumps({**json.loads(good), "segments": "nope"}).encode(),  # not the schema
        lambda good: json.dumps({**json.loads(good), "results": {"bucket": "b", "json": "x", "rttm": "y"}}).encode(),
    ],
    ids=["truncated", "empty", "not the schema", "another location"],
)
def test_a_corrupt_stored_result_is_not_reused(corrupt):
    store, location = _store(b"")
    store.client.response._body = corrupt(_document(location))
    assert store.find_result(location) is None
    assert store.health.failure is None


def test_no_etag_no_reuse():
    store, location = _store(b"")
    store.client.response._body = _document(location)
    assert store.find_result(store.locate(ObjectRef("audio", "calls/a.wav"), DIGEST)) is None
    assert store.find_result(store.locate(ObjectRef("audio", "calls/a.wav", None, "etag-2"), DIGEST)) is None

"""The attempt log on the real MinIO: counts, leases between two consumers, clean-up."""

from __future__ import annotations

import uuid

import pytest

from consumer.config import Settings
from consumer.errors import RunningElsewhereError, StorageUnavailableError
from consumer.events import InputRef
from consumer.kafka.attempts import ANSWERED, LEASE_SECONDS, StoredAttempts, marker_key
from consumer.storage import ObjectStore
from tests.support.processes import free_port

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(env: dict[str, str]) -> ObjectStore:
    return ObjectStore(Settings.from_env(env).storage)


def _log(stack, owner: str, clock: Clock) -> StoredAttempts:
    return StoredAttempts(_store(stack.env), owner, clock=clock)


def _exists(stack, ref: InputRef) -> bool:
    names = stack.minio().list_objects(stack.env["S3_RESULTS_BUCKET"], prefix=marker_key(ref))
    return any(True for _ in names)


def test_starts_add_up_until_settled(stack):
    clock = Clock()
    ref = InputRef(f"in-{uuid.uuid4().hex}", "/tests", "dev.diarization.audio.uploaded")
    pod = _log(stack, "pod-0", clock)
    assert [pod.begin(ref) for _ in range(3)] == [1, 2, 3]  # the same member restarted: no waiting
    pod.settle(ref, 2)  # a stop takes its start back
    assert pod.begin(ref) == 3
    pod.settle(ref)
    assert not _exists(stack, ref)
    assert pod.begin(ref) == 1


def test_another_consumer_waits_for_a_live_lease_and_skips_an_answered_input(stack):
    clock = Clock()
    ref = InputRef(f"in-{uuid.uuid4().hex}", "/tests", "dev.diarization.audio.uploaded")
    first, second = _log(stack, "pod-a", clock), _log(stack, "pod-b", clock)
    assert first.begin(ref) == 1
    clock.now += LEASE_SECONDS * 0.9
    with pytest.raises(RunningElsewhereError):
        second.begin(ref)
    first.renew(ref)
    clock.now += LEASE_SECONDS * 0.9  # renewed: still alive
    with pytest.raises(RunningElsewhereError):
        second.begin(ref)
    first.answered(ref)
    assert second.begin(ref) == ANSWERED
    second.settle(ref)
    assert not _exists(stack, ref)


def test_a_lease_not_renewed_belongs_to_a_dead_consumer_and_counts(stack):
    clock = Clock()
    ref = InputRef("x" * 5000, "/tests", "dev.diarization.audio.uploaded")  # ids of any length
    first, second = _log(stack, "pod-a", clock), _log(stack, "pod-b", clock)
    assert first.begin(ref) == 1
    clock.now += LEASE_SECONDS + 1
    assert second.begin(ref) == 2
    second.settle(ref)


def test_an_unreachable_store_is_retryable(stack):
    ref = InputRef("in", "/tests", "dev.diarization.audio.uploaded")
    unreachable = StoredAttempts(_store({**stack.env, "S3_ENDPOINT": f"127.0.0.1:{free_port()}"}), "pod-a")
    with pytest.raises(StorageUnavailableError) as caught:
        unreachable.begin(ref)
    assert caught.value.retryable

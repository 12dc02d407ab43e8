"""Security properties that are pure logic: result keys stay under their prefix, the API
key comparison is constant-time."""

from __future__ import annotations

import hmac
import re
from pathlib import Path

import pytest
import yaml

from consumer.config import StorageSettings
from consumer.errors import InvalidEventError, UnauthorizedError
from consumer.events import ObjectRef
from consumer.storage import ObjectStore
from http_shim import auth


@pytest.fixture
def store() -> ObjectStore:
    # a real client: building it opens no connection
    return ObjectStore(StorageSettings(results_prefix="results/"))


DIGEST = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("calls/a.wav", "results/audio/calls/a.wav"),
        ("/etc/passwd", "results/audio/etc/passwd"),
        ("..a/b..", "results/audio/..a/b.."),
        ("a%2F..%2Fb", "results/audio/a%2F..%2Fb"),
    ],
)
def test_result_keys_stay_under_the_prefix_and_the_bucket(store, key, expected):
    location = store.locate(ObjectRef("audio", key), DIGEST)
    assert location.json_key == f"{expected}/{DIGEST}.json"
    assert re.fullmatch(re.escape(f"{expected}/{DIGEST}.") + "[0-9a-f]{16}" + re.escape(".rttm"), location.rttm_key)
    assert location.bucket == "diarization-results"


def test_every_run_writes_its_own_rttm_and_buckets_do_not_share(store):
    runs = {store.locate(ObjectRef("audio", "x.wav"), DIGEST) for _ in range(20)}
    assert len({run.json_key for run in runs}) == 1 and len({run.rttm_key for run in runs}) == 20
    other = store.locate(ObjectRef("audio-b", "x.wav"), DIGEST)
    assert other.json_key not in {run.json_key for run in runs}


def test_a_key_too_long_for_its_result_name_is_refused_before_any_work(store):
    longest = "k" * (1024 - len(f"results/audio//{DIGEST}.0123456789abcdef.rttm"))
    store.locate(ObjectRef("audio", longest), DIGEST)
    with pytest.raises(InvalidEventError, match="too long"):
        store.locate(ObjectRef("audio", longest + "k"), DIGEST)


@pytest.mark.parametrize(
    "key",
    [
        "../secret.wav",
        "a/../../b.wav",
        "a/./b.wav",
        "..",
        "a/..",
        "bad\x00key",
        "tab\tkey",
        "del\x7fkey",
        "trailing-newline\n",
        "",
        "k" * 1025,
    ],
)
def test_keys_that_could_escape_are_refused(store, key):
    with pytest.raises(InvalidEventError):
        store.locate(ObjectRef("audio", key), DIGEST)


def test_every_api_key_check_goes_through_one_constant_time_comparison(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    for header in ("Bearer right-key", "Bearer wrong", "Bearer " + "x" * 500, "", "Basic right-key"):
        try:
            auth.require_bearer(header, "right-key")
        except UnauthorizedError:
            pass
    # one comparison per check, whatever the header, of equal-length digests
    assert len(calls) == 5
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}


def _workloads():
    root = Path(__file__).resolve().parents[2] / "knative"
    for path in sorted(root.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if (
                isinstance(document, dict)
                and document.get("kind") in {"Deployment", "Service"}
                and "template" in document.get("spec", {})
            ):
                yield path.name, document["spec"]["template"]["spec"]


def test_every_workload_runs_as_non_root_without_privilege_escalation():
    workloads = list(_workloads())
    assert {name for name, _ in workloads} >= {"service.yaml", "deployment.yaml"}
    for name, pod in workloads:
        for container in pod["containers"]:
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, f"{name}/{container['name']} may run as root"
            assert context.get("allowPrivilegeEscalation") is False, f"{name}/{container['name']}"
            assert context.get("capabilities", {}).get("drop") == ["ALL"], f"{name}/{container['name']}"

"""Every operation of the shim's own OpenAPI document, fuzzed against the real shim with schemathesis.

The shim runs as deployed (gunicorn, the real offline model, an API key, the receiver on with
a sender token, ``/v1/jobs`` on, the default limits), on the worker's real MinIO as a user with
nothing but the jobs policy (``local-dev/jobs-policy.json``): jobs are stored for real, and an
event names audio the receiver may not read. A 503 ``storage_unavailable`` (retried by Knative)
is the one 5xx allowed, on ``POST /`` only. Every other answer must be a documented status with
a documented content type and body, and the shim must still be serving at the end.
Generation is derandomized and bounded (``EXAMPLES`` per operation, positive and negative),
and some uploads are real speech, so that the options reach the model too.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
import soundfile
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from consumer.config import Settings
from http_shim.openapi import document
from tests.support.credentials import API_AUTH, API_KEY, RECEIVER_TOKEN, SENDER_AUTH
from tests.support.processes import free_port, shim_env, start_module, stop, wait_http

EXAMPLES = 30  # per operation: about two minutes for all of them on two busy cores
DOCUMENTED = [status_code_conformance, content_type_conformance, response_schema_conformance]


def _clips(sample: Path) -> list[bytes]:
    """Real speech from pyannote's sample (one and two speakers), silence, and a clip under the minimum."""
    samples, rate = soundfile.read(sample, dtype="float32")
    clips = [samples[: int(2 * rate)], samples[int(8 * rate) : int(12 * rate)], samples[: int(1 * rate)] * 0]
    clips.append(samples[: int(0.2 * rate)])
    encoded = []
    for clip in clips:
        out = io.BytesIO()
        soundfile.write(out, clip, rate, format="WAV", subtype="PCM_16")
        encoded.append(out.getvalue())
    return encoded


@dataclass(frozen=True)
class FuzzedShim:
    """The shim under fuzzing: its address, process and log."""

    base: str
    process: Popen
    log: Path


@pytest.fixture(scope="module")
def fuzzed_shim(tmp_path_factory: pytest.TempPathFactory, settings, sample, stack) -> Iterator[FuzzedShim]:
    """``diarization-shim`` with the API key, the receiver (sender token) and jobs on; real speech registered for uploads."""
    schemathesis.openapi.media_type("audio/wav", st.sampled_from(_clips(sample[0])))
    port = free_port()
    log = tmp_path_factory.mktemp("fuzzed-shim") / "shim.log"
    env = shim_env(
        settings.engine.model,
        port,
        HTTP_THREADS="4",
        RECEIVER_ENABLED="true",
        RECEIVER_TOKEN=RECEIVER_TOKEN,
        JOBS_ENABLED="true",
        **{**stack.env, **stack.jobs_user()},
    )
    process = start_module("http_shim.server", env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", process, timeout=120, log=log)
        wait_http(f"{base}/ready", process, timeout=600, log=log)
        yield FuzzedShim(base, process, log)
    finally:
        stop(process)


def _document() -> dict[str, Any]:
    """The document of a shim configured as ``fuzzed_shim`` is (checked against the served one below)."""
    configured = Settings.from_env({"API_KEY": API_KEY, "RECEIVER_ENABLED": "true", "RECEIVER_TOKEN": RECEIVER_TOKEN})
    return json.loads(json.dumps(document(configured, receiver=True, jobs=True)))


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: schemathesis.Case, fuzzed_shim: FuzzedShim) -> None:
    receiver = case.path == "/"
    response = case.call(base_url=fuzzed_shim.base, headers=SENDER_AUTH if receiver else API_AUTH, timeout=300)
    if receiver and response.status_code == 503:
        body = response.json()
        assert body["error"]["code"] == "storage_unavailable", body
        case.validate_response(response, checks=DOCUMENTED)
    else:
        case.validate_response(response, checks=[not_a_server_error, *DOCUMENTED, response_headers_conformance])
    assert fuzzed_shim.process.poll() is None, fuzzed_shim.log.read_text()[-4000:]


def test_the_fuzzed_document_is_the_one_the_shim_serves(fuzzed_shim: FuzzedShim) -> None:
    assert requests.get(f"{fuzzed_shim.base}/openapi.json", timeout=10).json() == DOCUMENT


def test_the_shim_still_serves_after_the_fuzzing(fuzzed_shim: FuzzedShim, sample) -> None:
    """After every hostile input, a real job still gets its answer."""
    started = time.monotonic()
    with sample[0].open("rb") as audio:
        response = requests.post(f"{fuzzed_shim.base}/v1/vad", files={"file": audio}, headers=API_AUTH, timeout=300)
    assert response.status_code == 200 and response.json()["speech_segments"], response.text
    assert time.monotonic() - started < 300


def test_the_fuzzed_shim_stores_a_job_on_its_scoped_store_user(fuzzed_shim: FuzzedShim, sample) -> None:
    """The job door of the fuzzed shim reaches the real store (its fuzzed answers are not all refusals)."""
    with sample[0].open("rb") as audio:
        submitted = requests.post(f"{fuzzed_shim.base}/v1/jobs", files={"file": audio}, headers=API_AUTH, timeout=60)
    assert submitted.status_code == 202, submitted.text
    job = requests.get(f"{fuzzed_shim.base}/v1/jobs/{submitted.json()['id']}", headers=API_AUTH, timeout=60)
    assert job.status_code == 200 and job.json()["status"] == "queued", job.text  # no consumer runs here
    listed = requests.get(f"{fuzzed_shim.base}/v1/jobs?limit=100", headers=API_AUTH, timeout=60).json()
    assert submitted.json()["id"] in [j["id"] for j in listed["jobs"]]

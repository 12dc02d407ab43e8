"""The shim served by gunicorn on loopback, as in production."""

from __future__ import annotations

import pytest
import requests

from tests.support.credentials import API_AUTH, API_KEY
from tests.support.processes import free_port, start_module, stop, wait_http


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings):
    port = free_port()
    log = tmp_path_factory.mktemp("shim") / "shim.log"
    process = start_module(
        "http_shim.server",
        {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "DIARIZATION_MODEL": settings.engine.model,
            "HTTP_THREADS": "4",
            "API_KEY": API_KEY,
        },
        log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # liveness answers while the model is still loading
        health = wait_http(f"{base}/health", process, timeout=60, log=log)
        assert health.json()["status"] == "healthy"
        wait_http(f"{base}/ready", process, timeout=300, log=log)
        yield base, process, log
    finally:
        stop(process)


def test_diarize_and_vad_over_real_http(server, sample):
    base, _, _ = server
    with sample[0].open("rb") as audio:
        response = requests.post(
            f"{base}/v1/diarize", files={"file": audio}, data={"num_speakers": "2"}, headers=API_AUTH, timeout=300
        )
    assert response.status_code == 200, response.text
    assert response.json()["num_speakers"] == 2
    with sample[0].open("rb") as audio:
        response = requests.post(f"{base}/v1/vad", files={"file": audio}, headers=API_AUTH, timeout=300)
    assert response.status_code == 200 and response.json()["speech_segments"]
    assert requests.get(f"{base}/health", timeout=5).json()["model_loaded"] is True


def test_logs_are_json_lines_with_job_fields(server, sample):
    base, _, log = server
    with sample[0].open("rb") as audio:
        requests.post(
            f"{base}/v1/vad", files={"file": audio}, headers={"X-Request-ID": "trace-me-123", **API_AUTH}, timeout=300
        )
    import json

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    jobs = [line for line in lines if line.get("message") == "job completed" and line.get("job_id") == "trace-me-123"]
    assert jobs, log.read_text()[-3000:]
    assert {"audio_seconds", "inference_seconds", "real_time_factor", "task"} <= set(jobs[0])
    assert any(line.get("message") == "model ready" for line in lines)


def test_sigterm_stops_the_server_cleanly(server):
    _, process, _ = server
    assert stop(process) == 0

"""The consumer's liveness follows its loop's heartbeat; readiness is the engine's, as on the shim."""

import time
from types import SimpleNamespace

import requests

from consumer.errors import ModelLoadError
from consumer.probes import Heartbeat, ProbeServer, readiness


def test_health_turns_503_when_the_loop_stops_beating():
    heartbeat = Heartbeat()
    engine = SimpleNamespace(ready=False, error=None)  # the two attributes the probes read
    server = ProbeServer("127.0.0.1", 0, heartbeat, engine, stale_after=0.3)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        heartbeat.beat()
        assert requests.get(f"{base}/health", timeout=5).status_code == 200
        loading = requests.get(f"{base}/ready", timeout=5)
        assert (loading.status_code, loading.json()) == (503, {"status": "loading"})
        engine.ready = True
        assert requests.get(f"{base}/ready", timeout=5).status_code == 200
        time.sleep(0.5)  # no beat: the loop is stuck
        stuck = requests.get(f"{base}/health", timeout=5)
        assert stuck.status_code == 503 and stuck.json()["status"] == "stuck"
        heartbeat.beat()
        assert requests.get(f"{base}/health", timeout=5).status_code == 200
        assert "diarization_model_ready 1.0" in requests.get(f"{base}/metrics", timeout=5).text
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.close()


def test_readiness_reports_loading_failed_and_ready():
    assert readiness(SimpleNamespace(ready=False, error=None)) == (503, {"status": "loading"})
    failed = ModelLoadError("no such model")
    assert readiness(SimpleNamespace(ready=False, error=failed)) == (
        503,
        {"status": "failed", "error": failed.to_dict()},
    )
    assert readiness(SimpleNamespace(ready=True, error=None)) == (200, {"status": "ready"})

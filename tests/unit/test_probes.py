"""The consumer's liveness follows its loop's heartbeat; readiness is the engine's, as on the shim."""

import time
from types import SimpleNamespace

import requests

from consumer.errors import ModelLoadError
from consumer.kafka.probe_server import Heartbeat, ProbeServer
from consumer.readiness import readiness


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


def test_readiness_turns_503_while_the_store_fails_the_service_and_200_when_it_serves_again():
    from consumer.errors import StoreCredentialsError
    from consumer.storage import StoreHealth

    engine = SimpleNamespace(ready=True, error=None)
    health = StoreHealth()
    assert readiness(engine, health) == (200, {"status": "ready"})
    rejected = StoreCredentialsError("InvalidAccessKeyId")
    health.record("audio", rejected)
    assert readiness(engine, health) == (503, {"status": "storage_unavailable", "error": rejected.to_dict()})
    health.record("result write", rejected)
    health.record("audio", None)  # reads work again, writes were not tried yet
    assert readiness(engine, health)[0] == 503
    health.record("result write", None)
    assert readiness(engine, health) == (200, {"status": "ready"})
    assert readiness(SimpleNamespace(ready=False, error=None), health) == (503, {"status": "loading"})

"""The consumer's liveness follows its loop's heartbeat."""

import time

import requests

from consumer.probes import Heartbeat, ProbeServer


def test_health_turns_503_when_the_loop_stops_beating():
    heartbeat = Heartbeat()
    ready = {"value": False}
    server = ProbeServer("127.0.0.1", 0, heartbeat, lambda: ready["value"], stale_after=0.3)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        heartbeat.beat()
        assert requests.get(f"{base}/health", timeout=5).status_code == 200
        assert requests.get(f"{base}/ready", timeout=5).status_code == 503
        ready["value"] = True
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

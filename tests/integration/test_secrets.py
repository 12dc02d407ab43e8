"""Secrets given to the service never show in its logs, probes or metrics."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.support.stack import cloudevent_headers, results_for

pytestmark = pytest.mark.integration

SECRETS = {
    "HF_TOKEN": "hf_" + uuid.uuid4().hex,
    "API_KEY": "api-" + uuid.uuid4().hex,
    "KAFKA_SASL_PASSWORD": "sasl-" + uuid.uuid4().hex,
    "RECEIVER_TOKEN": "recv-" + uuid.uuid4().hex,
}


def _assert_clean(text: str, where: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret leaked into {where}"


def test_shim_keeps_secrets_out_of_logs_and_probes(stack, start_shim, sample, tmp_path):
    base = start_shim(**SECRETS)
    secrets = [*SECRETS.values(), stack.env["S3_SECRET_KEY"]]
    key = {"Authorization": f"Bearer {SECRETS['API_KEY']}"}  # /metrics needs the API key when one is set
    bodies = [requests.get(f"{base}{path}", headers=key, timeout=10).text for path in ("/health", "/ready", "/metrics")]
    assert "http_requests_total" in bodies[-1]
    with sample[0].open("rb") as audio:
        ok = requests.post(
            f"{base}/v1/vad",
            files={"file": audio},
            headers={"Authorization": f"Bearer {SECRETS['API_KEY']}"},
            timeout=300,
        )
    assert ok.status_code == 200
    denied = requests.post(f"{base}/v1/vad", files={"file": b"x"}, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert denied.status_code == 401
    bodies += [ok.text, denied.text]
    for body in bodies:
        _assert_clean(body, "an HTTP answer", secrets)
    logs = "".join(path.read_text() for path in tmp_path.glob("shim-*.log"))
    assert '"starting HTTP shim"' in logs and "Secret('***')" in logs  # the settings were logged, masked
    _assert_clean(logs, "the shim's log", secrets)


def test_consumer_keeps_secrets_out_of_logs_and_probes(stack, start_consumer, reader, sample):
    topics = stack.topics("secrets")
    consumer = start_consumer({**topics, **SECRETS})
    key = f"secrets/{uuid.uuid4().hex[:8]}/sample.wav"
    stack.upload(key, sample[0].read_bytes())
    stack.produce(
        topics["KAFKA_INPUT_TOPIC"],
        json.dumps({"bucket": "audio", "key": key}).encode(),
        None,
        cloudevent_headers("sec-1"),
    )
    stack.produce(
        topics["KAFKA_INPUT_TOPIC"],
        json.dumps({"bucket": "audio", "key": "secrets/missing.wav"}).encode(),
        None,
        cloudevent_headers("sec-2"),
    )
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    events = results.wait_for(lambda ev: results_for(ev, "sec-1") and results_for(ev, "sec-2"), 180, "both results")
    secrets = [*SECRETS.values(), stack.env["S3_SECRET_KEY"]]
    for path in ("/health", "/ready", "/metrics"):
        _assert_clean(requests.get(f"{consumer.probe}{path}", timeout=10).text, path, secrets)
    for event in events:
        _assert_clean(json.dumps(event.data), "a result event", secrets)
    logs = consumer.log_lines()
    assert '"starting Kafka consumer"' in logs and "Secret('***')" in logs
    _assert_clean(logs, "the consumer's log", secrets)

"""Kafka security settings reach librdkafka unchanged and never reach a log line."""

import io
import logging

from consumer.config import Settings
from consumer.kafka.connection import client_configs
from consumer.logs import JsonFormatter

ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-0.example:9093,kafka-1.example:9093",
    "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "diarizer",
    "KAFKA_SASL_PASSWORD": "kafka-top-secret",
    "KAFKA_SSL_CA_LOCATION": "/etc/kafka/ca.crt",
    "KAFKA_GROUP_ID": "team-a",
    "KAFKA_MAX_POLL_INTERVAL_MS": "600000",
    "S3_SECRET_KEY": "s3-top-secret",
}


def test_security_settings_pass_through():
    consumer, producer = client_configs(Settings.from_env(ENV).kafka)
    for config in (consumer, producer):
        assert config["bootstrap.servers"] == ENV["KAFKA_BOOTSTRAP_SERVERS"]
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == "SCRAM-SHA-512"
        assert config["sasl.username"] == "diarizer"
        assert config["sasl.password"] == "kafka-top-secret"
        assert config["ssl.ca.location"] == "/etc/kafka/ca.crt"
    assert consumer["group.id"] == "team-a" and consumer["max.poll.interval.ms"] == 600000
    assert consumer["enable.auto.commit"] is False
    assert producer["acks"] == "all" and producer["enable.idempotence"] is True


def test_plaintext_has_no_sasl_keys():
    consumer, _ = client_configs(Settings.from_env({}).kafka)
    assert consumer["security.protocol"] == "PLAINTEXT"
    assert not any(key.startswith("sasl.") for key in consumer)


def test_the_start_up_log_line_masks_every_secret():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.settings")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("starting", extra={"settings": Settings.from_env(ENV).describe()})
    finally:
        log.removeHandler(handler)
    line = stream.getvalue()
    assert "kafka-top-secret" not in line and "s3-top-secret" not in line
    assert "diarizer" in line and "Secret('***')" in line

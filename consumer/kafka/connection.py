"""How the Kafka door reaches the brokers, and the librdkafka configurations built on it.

``ConnectionConfig`` holds the connection settings only (brokers, security protocol, SASL,
CA), as quix-streams' ``ConnectionConfig`` does, and renders librdkafka's dict for them;
``client_configs`` adds what the consumer and the producer do on top of it (group, commits,
acknowledgements, sizes). Secrets go into the dicts, never into logs.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from consumer.config import KafkaSettings, Secret


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """The brokers and how to authenticate to them: what every client of one cluster shares."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret = Secret("")
    ssl_ca_location: str = ""

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> ConnectionConfig:
        """The connection part of the ``KAFKA_*`` settings."""
        return cls(
            settings.bootstrap_servers,
            settings.security_protocol,
            settings.sasl_mechanism,
            settings.sasl_username,
            settings.sasl_password,
            settings.ssl_ca_location,
        )

    def as_librdkafka_dict(self) -> dict[str, Any]:
        """librdkafka's properties for this connection (the password in clear: never log this)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": f"diarization-{socket.gethostname()}",
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.value
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config


def client_configs(settings: KafkaSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(consumer, producer) librdkafka configurations; secrets go in, never into logs."""
    common = ConnectionConfig.from_settings(settings).as_librdkafka_dict()
    consumer = {
        **common,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "session.timeout.ms": settings.session_timeout_ms,
        "fetch.message.max.bytes": settings.max_message_bytes + 1024,
        # a joining or leaving member moves only the partitions it must (KIP-429): an
        # in-flight job keeps its partition while KEDA scales the group
        "partition.assignment.strategy": "cooperative-sticky",
    }
    if settings.group_instance_id:
        # static membership (KIP-345): a restarted pod rejoins as itself, without a rebalance
        consumer["group.instance.id"] = settings.group_instance_id
    producer = {
        **common,
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": int(settings.publish_timeout_seconds * 1000),
        "linger.ms": 5,
        # records are built to fit this (kafka_records); librdkafka's own default (1000000)
        # would refuse dead letters of inputs the consumer accepts
        "message.max.bytes": settings.max_record_bytes,
    }
    return consumer, producer

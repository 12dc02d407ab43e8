"""The Kafka door, in one room: the only user of confluent-kafka.

- ``worker``: the loop (``KafkaWorker``) and the ``diarization consumer`` entry point;
- ``records``: the records it publishes (results, dead letters), built to fit the topics;
- ``attempts``: durable starts of each input's job, and the leases kept while it runs;
- ``probe_server``: the consumer's ``/health``, ``/ready`` and ``/metrics``;
- ``connection``: the librdkafka configurations, rendered from the connection settings.

It may import the core (``consumer.event_job`` and below: events, codec, storage, errors,
config, readiness); nothing outside this package imports it but the entry point (``cli``).
"""

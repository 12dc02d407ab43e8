"""Speaker diarization service: the core every door shares, and the Kafka door.

The rooms, from the top down (imports only go down):

- ``kafka/``: the Kafka door (the only confluent-kafka user): the worker loop, its records,
  attempt markers and leases, its probe server, the librdkafka configuration;
- ``wiring``: the composition root, the one place that picks concrete classes;
- the job core: ``event_job`` (stat, reuse, fetch, run, store: the job of an event) on
  ``analyzer`` (audio in, result out: the sync job, with bounded admission) and
  ``deadline`` (how long a job may run); ``jobs`` (where a job of ``/v1/jobs`` lives in the
  store, and its state) and ``webhooks`` (its signed webhook: outbox, sender, address rules);
- ``codec``: the only module that touches CloudEvents, for the Kafka and Knative doors;
- ``engine/``: the seam around pyannote (``Engine``), the pyannote engine, identification of
  known speakers, turn confidence, CAM++, the offline bundle;
- ``audio/``: decoding (any supported container to mono float32 at 16 kHz);
  ``storage``: the one road to the object store;
- values and rules: ``options`` (what a job asks for, one parser), ``events`` and
  ``formats`` (plain values and how results are written), ``transcript``, ``voiceprints``
  (voiceprint documents), ``readiness``, ``errors``, ``retry``, ``config`` (all settings),
  ``logs``, ``metrics``, ``memory``.

The other two doors, the sync HTTP API and the Knative receiver, are in ``http_shim``; the
``diarization`` entry point that starts each door is the ``diarization`` package.
"""

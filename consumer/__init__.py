"""Speaker diarization service: the core every door shares, and the Kafka door.

- the core: ``options`` (what a job asks for), ``analyzer`` (audio in, result out: the
  sync job), ``event_job`` (stat, reuse, fetch, run, store: the job of an event),
  ``engine/`` (the interface around pyannote, and the offline bundle), ``audio``
  (decoding), ``storage`` (the object store), ``events`` and ``formats`` (plain values
  and how results are written), ``transcript`` (a transcript's words and segments given
  their speakers), ``errors``, ``retry``, ``config`` (all settings);
- the Kafka door: ``kafka_worker`` (the only confluent-kafka user) and ``kafka_records``;
- ``codec``: the only module that touches CloudEvents, for the Kafka and Knative doors;
- ``wiring``: the composition root; ``cli``: the ``diarization`` entry point.

The other two doors, the sync HTTP API and the Knative receiver, are in ``http_shim``.
"""

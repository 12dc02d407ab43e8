"""The real Kafka consumer with a hook that dies or raises on chosen inputs: faults for tests.

Run instead of ``consumer.kafka.worker`` (``start_consumer(..., module=...)``), with the
consumer's usual environment plus one of:

- ``DIE_ON_KEY_CONTAINING``: a job for an object whose key contains this text ends the
  process at once with ``os._exit(DIED)``, as an out-of-memory kill or a native crash
  would: no answer, no commit, no clean-up;
- ``RAISE_ON_KEY_CONTAINING``: such a job raises ``RuntimeError(RAISED)`` from outside the
  job core (``EventJob.handle`` itself), which reaches the Kafka worker's handling of
  unexpected errors.

Everything else is the real consumer, ``consumer.kafka.worker.main``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from consumer.event_job import EventJob
from consumer.events import AudioJobRequested
from consumer.kafka import worker as kafka_worker

DIED = 86
RAISED = "injected fault outside the job core"
log = logging.getLogger("tests.dying_consumer")


def main() -> int:
    die_on = os.environ.get("DIE_ON_KEY_CONTAINING", "")
    raise_on = os.environ.get("RAISE_ON_KEY_CONTAINING", "")
    if not (die_on or raise_on):
        raise SystemExit("dying_consumer: set DIE_ON_KEY_CONTAINING or RAISE_ON_KEY_CONTAINING")
    handle = EventJob.handle

    def handle_or_fail(self: EventJob, request: AudioJobRequested, *args: Any, **kwargs: Any) -> Any:
        if die_on and die_on in request.object.key:
            log.warning("dying on the marked input", extra={"event_id": request.input.id})
            logging.shutdown()
            os._exit(DIED)
        if raise_on and raise_on in request.object.key:
            log.warning("raising on the marked input", extra={"event_id": request.input.id})
            raise RuntimeError(RAISED)
        return handle(self, request, *args, **kwargs)

    EventJob.handle = handle_or_fail  # type: ignore[method-assign]
    return kafka_worker.main([])


if __name__ == "__main__":
    raise SystemExit(main())

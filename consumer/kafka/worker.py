"""The Kafka door, and the only confluent-kafka user: ``diarization-consumer``.

At-least-once, nothing lost:

- offsets are committed (synchronously, auto-commit off) only after every result event
  of a message was acknowledged by the broker (``acks=all``, idempotent producer);
- a job runs in a worker thread while this loop keeps polling with its partitions
  paused, so a job longer than ``max.poll.interval.ms`` causes no rebalance;
- retryable failures (storage, broker, model not ready) are retried in place with
  jittered exponential backoff, still polling, never spinning, never committing;
- permanent failures are answered with a ``…failed`` event; a message that is no event
  at all (or an unsupported one) also goes to the dead-letter topic, and the offset moves on;
- every record produced is built to fit the topics' size limit (``kafka_records``); a
  record the broker refuses for good (too large, not authorized, a fatal producer error)
  is not retried like an outage: the process exits non-zero and is restarted;
- an input whose job was started ``MAX_ATTEMPTS`` times without an outcome (its consumer
  died each time) is answered ``too_many_attempts`` (``consumer.kafka.attempts``);
- every job runs under a deadline (``consumer.deadline``): a job that stops making progress
  (``JOB_STALL_SECONDS``) or outruns its budget cannot be killed, so the process stops
  renewing its lease and exits with ``EXIT_JOB_OVERDUE``, uncommitted, to be restarted;
  that start counts like any other that died;
- nothing on the poll loop waits for the object store: attempt markers are read and written
  in a job thread, leases renewed on a thread of their own (``attempts.LeaseKeeper``);
- partitions are assigned cooperatively (``cooperative-sticky``): a member joining or
  leaving moves only the partitions it must, so an in-flight job keeps its partition;
- a redelivered input is answered from its stored result object (see ``EventJob``)
  with the same deterministic result id, so duplicates never carry new ids;
- SIGTERM lets the current job finish within a grace period, publishes, commits, closes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter

from consumer import codec
from consumer.config import Settings, from_environment
from consumer.deadline import JobWatch
from consumer.errors import (
    EngineBrokenError,
    InternalError,
    InvalidEventError,
    ServiceError,
    TooManyAttemptsError,
    UnsupportedEventError,
)
from consumer.event_job import EventJob
from consumer.events import AudioJobRequested, InputRef, JobFailed, JobOutcome, JobProgressed
from consumer.kafka.attempts import ANSWERED, AttemptLog, LeaseKeeper, StoredAttempts
from consumer.kafka.connection import client_configs
from consumer.kafka.probe_server import Heartbeat, ProbeServer
from consumer.kafka.records import (
    Record,
    RecordTooLargeError,
    coordinates,
    dead_letter_record,
    headers_of,
    result_record,
    where,
)
from consumer.logs import configure_logging
from consumer.retry import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")

MESSAGES = Counter("kafka_messages_total", "Input messages handled, by outcome", ["outcome"])
REBALANCES = Counter("kafka_rebalances_total", "Partition assignment changes", ["kind"])
RETRIES = Counter("kafka_retries_total", "Backoffs before retrying, by reason", ["reason"])

EXIT_KAFKA_FAILED = 3  # the exit status when the Kafka client failed for good
_POLL_SECONDS = 0.2  # while a job runs: keeps the group membership and the heartbeat alive
_PAUSE_AFTER_SECONDS = 2.0  # jobs running longer than this are polled for, partitions paused
EXIT_ENGINE_BROKEN = 3  # the process's exit code when the engine broke (README: troubleshooting)
EXIT_JOB_OVERDUE = 4  # the process's exit code when a job outran its deadline (consumer.deadline)


# Produce errors that no retry can cure: the record is too large for the topic, or the
# client may not write to it. Retrying them would stall the partition for good.
_REFUSED_FOR_GOOD = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError._FATAL,
    }
)


class _Abandoned(Exception):
    """Shutdown outlived its grace period: leave the message uncommitted for redelivery."""


class _AnsweredElsewhere:
    """What ``_run_job`` gives for an input the partition's previous owner has answered."""


ANSWERED_ELSEWHERE = _AnsweredElsewhere()


class JobOverdueError(Exception):
    """A job outran its deadline (``consumer.deadline``): its thread cannot be stopped, so the
    process must exit non-zero, its input uncommitted and its start counted."""


class KafkaClientFailedError(Exception):
    """The Kafka client failed for good (a record refused for good, a fatal client error):
    the process must exit non-zero and be restarted, with the input left uncommitted."""


def refused_for_good(failure: object) -> bool:
    """Whether a produce failure (a ``KafkaError``, or an exception carrying one) can never succeed."""
    error = failure.args[0] if isinstance(failure, KafkaException) and failure.args else failure
    return isinstance(error, KafkaError) and (error.fatal() or error.code() in _REFUSED_FOR_GOOD)


class KafkaWorker:
    """Consumes audio events, runs them through an ``EventJob``, publishes the results."""

    def __init__(
        self, settings: Settings, event_job: EventJob, attempts: AttemptLog, heartbeat: Heartbeat | None = None
    ) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self.event_job = event_job
        self.attempts = attempts
        self.heartbeat = heartbeat or Heartbeat()
        self.backoff = Backoff(max_seconds=self.kafka.retry_backoff_max_seconds, tick_seconds=_POLL_SECONDS)
        consumer_config, producer_config = client_configs(self.kafka)
        consumer_config["error_cb"] = producer_config["error_cb"] = self._on_client_error
        self._consumer = Consumer(consumer_config)
        self._producer = Producer(producer_config)
        self._stopping = threading.Event()
        self._grace_deadline = float("inf")
        self._paused = False
        self.exit_code = 0  # what main() returns after run(): non-zero when the engine broke
        self._fatal: KafkaError | None = None
        self._in_hand: list[InputRef] = []  # inputs of the message in hand whose starts are counted
        self.leases = LeaseKeeper(attempts)
        self._watch: JobWatch | None = None  # of the job running now

    # --- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the current job (within the grace period) and exit."""
        if not self._stopping.is_set():
            self._grace_deadline = time.monotonic() + self.kafka.shutdown_grace_seconds
            self._stopping.set()
            log.info("stopping", extra={"grace_seconds": self.kafka.shutdown_grace_seconds})

    def run(self) -> None:
        """Consume until ``stop()``; blocks."""
        self._consumer.subscribe(
            [self.kafka.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info("consuming", extra={"topic": self.kafka.input_topic, "group": self.kafka.group_id})
        try:
            while not self._stopping.is_set():
                self._raise_if_failed()
                self.heartbeat.beat()
                message = self._consumer.poll(1.0)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    _log_message_error(error)
                    continue
                self._process(message)
        finally:
            self.leases.stop()
            self._consumer.close()
            self._producer.flush(self.kafka.publish_timeout_seconds)
            log.info("stopped")

    # --- one message ---------------------------------------------------------------------

    def _process(self, message: Message) -> None:
        self._in_hand = []  # the inputs of this message whose starts are in the attempt log
        try:
            try:
                records = self._records(message)
            except JobOverdueError:
                raise
            except Exception as exc:  # a bug must not crash-loop the consumer on one message
                # reached only when the message does not decode, or its answer cannot be built:
                # an input that decodes is answered under its own id (see _records)
                log.exception("unexpected error on a message; dead-lettered", extra=where(message))
                MESSAGES.labels("dead_lettered").inc()
                error = InternalError(f"{type(exc).__name__}: {str(exc)[:500]}")
                failed = JobFailed(coordinates(message), None, error.code, error.public_message)
                records = [self._dead_letter_record(message, error), self._result_record(failed, key=message.key())]
            if records is not None and self._publish(records):
                self._finish(message)
        finally:
            self._in_hand = []

    def _records(self, message: Message) -> list[Record] | None:
        """The records answering ``message``; ``None`` if shutdown abandoned one of its jobs."""
        try:
            items = self._decode(message)
        except (InvalidEventError, UnsupportedEventError) as exc:
            log.warning(
                "undecodable message dead-lettered",
                extra={**where(message), "error_code": exc.code, "error": exc.message},
            )
            MESSAGES.labels("dead_lettered").inc()
            failed = JobFailed(coordinates(message), None, exc.code, exc.public_message)
            return [self._dead_letter_record(message, exc), self._result_record(failed, key=message.key())]
        if not items:
            MESSAGES.labels("ignored").inc()
        records: list[Record] = []
        for item in items:
            try:
                outcome = item if isinstance(item, JobFailed) else self._run_job(item)
                if outcome is None:  # abandoned at shutdown: not committed, redelivered later
                    return None
                if isinstance(outcome, _AnsweredElsewhere):
                    MESSAGES.labels("answered_elsewhere").inc()
                    continue
                record = self._result_record(outcome)
            except JobOverdueError:
                raise
            except Exception as exc:  # a bug: answer this input under its own id, once
                log.exception("unexpected error on a job", extra={**where(message), "event_id": item.input.id})
                error = InternalError(f"{type(exc).__name__}: {str(exc)[:500]}")
                outcome = JobFailed(item.input, item.object, error.code, error.public_message)
                record = self._result_record(outcome)
            records.append(record)
            MESSAGES.labels("completed" if not isinstance(outcome, JobFailed) else "failed").inc()
        return records

    def _decode(self, message: Message) -> list[codec.Decoded]:
        size = len(message.value() or b"")
        if size > self.kafka.max_message_bytes:
            raise InvalidEventError(f"the message has {size} bytes, more than {self.kafka.max_message_bytes}")
        return codec.decode_kafka(headers_of(message), message.key(), message.value())

    def _run_job(self, request: AudioJobRequested) -> JobOutcome | _AnsweredElsewhere | None:
        """The job's outcome, retrying retryable failures; ``None`` if shutdown abandoned it.

        Each start is counted in the attempt log first (the count is cleared once the answer
        is published, ``_finish``), so only starts that died on the way (OOM, a native
        crash) add up. Waits while another consumer runs the job; ``ANSWERED_ELSEWHERE``
        if that consumer published its answer meanwhile.
        """
        starts = self._retrying(lambda: self.attempts.begin(request.input), request.input)
        if starts is None:
            return None
        if starts == ANSWERED:
            log.info("answered by the partition's previous owner", extra={"event_id": request.input.id})
            self._in_hand.append(request.input)  # its marker goes with the commit
            return ANSWERED_ELSEWHERE
        self._in_hand.append(request.input)
        self.leases.hold(request.input)
        if starts > self.kafka.max_attempts:
            error = TooManyAttemptsError(
                f"the job was started {starts - 1} times and never finished (at most {self.kafka.max_attempts})"
            )
            log.error("input failed after too many attempts", extra={"event_id": request.input.id, "starts": starts})
            failed = JobFailed(request.input, request.object, error.code, error.public_message)
            return self._retrying(lambda: self.event_job.note_failure(failed), request.input)
        watch = JobWatch(self.settings.jobs)
        self._watch = watch
        try:
            outcome = self._retrying(
                lambda: self.event_job.handle(request, progress=self._publish_progress, watch=watch), request.input
            )
        finally:
            self._watch = None
        if outcome is None:  # a stop is not the input's fault: take this start back
            self._in_hand.remove(request.input)
            self._forget_start(request.input, starts - 1)
        return outcome

    def _retrying(self, work: Callable[[], T], ref: InputRef) -> T | None:
        """``work()`` (run while polling), retried after retryable errors; ``None`` if shutdown came first."""
        attempt = 0
        while True:
            try:
                return self._while_polling(work)
            except _Abandoned:
                log.warning("job abandoned at shutdown", extra={"event_id": ref.id})
                return None
            except EngineBrokenError:
                # the process is at fault, not the input: leave it uncommitted, stop, exit non-zero
                log.critical("engine broken; the consumer stops", extra={"event_id": ref.id})
                self.exit_code = EXIT_ENGINE_BROKEN
                self.stop()
                return None
            except ServiceError as exc:  # handle() and the attempt log raise retryable errors only
                attempt += 1
                RETRIES.labels(exc.code).inc()
                if not self._back_off(attempt, exc.code):
                    return None

    def _finish(self, message: Message) -> None:
        """After ``message``'s answers were published: clear its inputs' starts and commit,
        or, if its partition moved meanwhile, leave both to the new owner."""
        if not self._owns(message):
            # The broker checks a commit's generation, not who owns the partition: committing
            # now could move the new owner's offset backwards. The new owner commits; the
            # marker tells it the answer is out (or, failing that, it answers from the stored
            # result, under the same id).
            log.warning("partition moved during the job; left to its new owner", extra=where(message))
            for ref in self._in_hand:
                self._best_effort(self.attempts.answered, ref)
            return
        for ref in list(self._in_hand):
            if self._retrying(partial(self._settle, ref), ref) is None:
                return
        self._commit(message)

    def _owns(self, message: Message) -> bool:
        return (message.topic(), message.partition()) in {(p.topic, p.partition) for p in self._consumer.assignment()}

    def _settle(self, ref: InputRef) -> bool:
        self.leases.release(ref)
        self.attempts.settle(ref)
        return True

    def _forget_start(self, ref: InputRef, starts: int) -> None:
        self._best_effort(lambda r: self.attempts.settle(r, starts), ref)

    def _best_effort(self, action: Callable[[InputRef], None], ref: InputRef) -> None:
        """``action(ref)`` on a marker, off the poll loop; a failure is logged, not retried."""

        def act() -> None:
            self.leases.release(ref)
            action(ref)

        try:
            if self._stopping.is_set():
                act()  # shutting down: there is nothing left to poll for
            else:
                self._while_polling(act)
        except ServiceError as exc:  # the marker stays as it was: at worst one count too many
            log.warning("attempt marker not updated", extra={"event_id": ref.id, "error": exc.message})

    # --- publishing and committing -------------------------------------------------------

    def _result_record(self, outcome: JobOutcome | JobProgressed, key: bytes | None = None) -> Record:
        return result_record(
            self.kafka.results_topic, outcome, self.settings.events.source, key, self.kafka.max_record_bytes
        )

    def _dead_letter_record(self, message: Message, error: ServiceError) -> Record:
        return dead_letter_record(self.kafka.dlq_topic, message, error, self.kafka.max_record_bytes)

    def _publish(self, records: list[Record]) -> bool:
        """Deliver ``records`` (acks=all); retry with backoff until they are. False at shutdown.

        Raises ``KafkaClientFailedError`` when a record is refused for good (``refused_for_good``).
        """
        attempt = 0
        while True:
            failures: list[object] = []

            # bound per attempt: a late report of an earlier attempt lands in its own list
            def delivered(error: KafkaError | None, _: Message, failures: list[object] = failures) -> None:
                if error is not None:
                    failures.append(error)

            try:
                for record in records:
                    self._producer.produce(
                        record.topic, value=record.value, key=record.key, headers=record.headers, on_delivery=delivered
                    )
                remaining = self._producer.flush(self.kafka.publish_timeout_seconds + 5)
            except (KafkaException, BufferError) as exc:
                failures.append(exc)
                remaining = 0
            if not failures and remaining == 0:
                return True
            refused = next((failure for failure in failures if refused_for_good(failure)), None)
            if refused is not None:
                raise KafkaClientFailedError(f"a result record was refused for good: {refused}")
            self._raise_if_failed()
            attempt += 1
            RETRIES.labels("publish_failed").inc()
            log.warning(
                "publishing results failed", extra={"error": str(failures[:1] or "timeout"), "attempt": attempt}
            )
            if not self._back_off(attempt, "publish_failed"):
                return False

    def _publish_progress(self, progress: JobProgressed) -> None:
        """Best effort, from the job thread: a lost progress event costs nothing."""
        try:
            record = self._result_record(progress)
            self._producer.produce(record.topic, value=record.value, key=record.key, headers=record.headers)
            self._producer.poll(0)
        except (KafkaException, BufferError, RecordTooLargeError) as exc:
            log.info("progress event dropped", extra={"error": str(exc)})

    def _commit(self, message: Message) -> None:
        try:
            self._consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:
            # The partition moved to another consumer meanwhile; it will redeliver the
            # message and answer it from the stored result, under the same result id.
            log.warning("commit failed", extra={"error": str(exc), "offset": message.offset()})

    # --- waiting while staying in the group ----------------------------------------------

    def _while_polling(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread; if it outlasts a short while, poll with partitions paused.

        Short jobs need no polling: pausing and resuming them would only cost the fetch
        long-poll after each resume (``fetch.wait.max.ms``, 500 ms by default).
        """
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = work()
            except BaseException as exc:  # re-raised in this thread below
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="job", daemon=True)
        thread.start()
        pause_after = time.monotonic() + min(_PAUSE_AFTER_SECONDS, self.kafka.max_poll_interval_ms / 4000)
        while thread.is_alive() and time.monotonic() < pause_after:
            self.heartbeat.beat()
            thread.join(_POLL_SECONDS)
        if thread.is_alive():
            self._pause()
            try:
                while thread.is_alive():
                    self._poll_paused()
                    self._raise_if_overdue()
                    if self._stopping.is_set() and time.monotonic() > self._grace_deadline:
                        raise _Abandoned()
                    thread.join(_POLL_SECONDS)
            finally:
                if not self._stopping.is_set():
                    self._resume()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _back_off(self, attempt: int, reason: str) -> bool:
        """Wait the backoff delay while polling with partitions paused; False if shutdown came first."""
        log.info("backing off", extra={"attempt": attempt, "reason": reason})
        self._pause()
        try:
            return self.backoff.wait(attempt, tick=self._still_waiting)
        finally:
            if not self._stopping.is_set():
                self._resume()

    def _still_waiting(self) -> bool:
        if self._stopping.is_set():
            return False
        self._poll_paused()
        return True

    def _raise_if_overdue(self) -> None:
        watch = self._watch
        reason = watch.overdue() if watch is not None else None
        if reason is not None:
            self.leases.stop()  # the next owner may take the input over once the lease lapses
            raise JobOverdueError(reason)

    def _poll_paused(self) -> None:
        self.heartbeat.beat()
        message = self._consumer.poll(0)
        if message is None or message.error() is not None:
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is not None and partition is not None and offset is not None:
            # fetched before the pause took effect: rewind so it is consumed later
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def _pause(self) -> None:
        self._paused = True
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)

    def _resume(self) -> None:
        self._paused = False
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.resume(assignment)

    # --- rebalance callbacks (run inside poll, on this thread) ---------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # cooperative protocol: ``partitions`` are only the added ones; the others stay,
        # paused or not (the library unassigns revoked ones itself after _on_revoke)
        REBALANCES.labels("assigned").inc()
        consumer.incremental_assign(partitions)
        if self._paused and partitions:
            consumer.pause(partitions)
        log.info("partitions assigned", extra={"partitions": [p.partition for p in partitions]})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        REBALANCES.labels("revoked").inc()
        log.info("partitions revoked", extra={"partitions": [p.partition for p in partitions]})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        REBALANCES.labels("lost").inc()
        log.warning("partitions lost", extra={"partitions": [p.partition for p in partitions]})

    # --- client failures -----------------------------------------------------------------

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (both clients): log; remember a fatal error."""
        _log_client_error(error)
        if error.fatal():
            # e.g. an idempotent producer's unrecoverable state, or a static member fenced
            # by another one with the same group.instance.id: the client is unusable now
            self._fatal = error

    def _raise_if_failed(self) -> None:
        if self._fatal is not None:
            raise KafkaClientFailedError(f"fatal Kafka client error: {self._fatal.str()}")


class _ClientErrorLog:
    """librdkafka reports every failed connection attempt (dozens a second while a broker
    is down): log the first of each kind, then at most one summary per interval."""

    def __init__(self, interval: float = 30.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._guard = threading.Lock()

    def __call__(self, error: KafkaError) -> None:
        now = time.monotonic()
        with self._guard:
            code = error.name()
            if now - self._last.get(code, -self._interval) < self._interval:
                self._suppressed[code] = self._suppressed.get(code, 0) + 1
                return
            self._last[code] = now
            suppressed = self._suppressed.pop(code, 0)
        log.warning(
            "kafka client error", extra={"error": error.str(), "code": code, "suppressed_since_last": suppressed}
        )


_log_client_error = _ClientErrorLog()


def _log_message_error(error: KafkaError) -> None:
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("kafka consume error", extra={"error": error.str(), "code": error.name()})


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``diarization-consumer``; all settings come from the environment."""
    argparse.ArgumentParser(
        prog="diarization-consumer",
        description="Consume audio-uploaded events from Kafka, diarize, publish result CloudEvents. "
        "Configured with environment variables; see the README.",
    ).parse_args(argv)
    settings = from_environment()
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting Kafka consumer", extra={"settings": settings.describe(), "pid": os.getpid()})

    from consumer.wiring import build_service, load_model

    service = build_service(settings)
    heartbeat = Heartbeat()
    probes = ProbeServer(
        "0.0.0.0",
        settings.kafka.probe_port,
        heartbeat,
        service.engine,
        settings.kafka.liveness_timeout_seconds,
        store=service.store_health,
    )
    probes.start()
    owner = settings.kafka.group_instance_id or f"{socket.gethostname()}-{os.getpid()}"
    attempts = StoredAttempts(service.store, owner)
    worker = KafkaWorker(settings, service.event_job, attempts, heartbeat)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    # the model loads before the first poll: no event is taken before it can be served
    stop_beating = threading.Event()
    threading.Thread(target=_beat_until, args=(heartbeat, stop_beating), daemon=True).start()
    try:
        if not load_model(service.engine):
            return 1
    finally:
        stop_beating.set()
    if service.webhooks is not None:  # /v1/jobs' webhooks: sent by every consumer (consumer.webhooks)
        service.webhooks.start()
    try:
        worker.run()
    except KafkaClientFailedError as exc:
        log.critical("exiting: the Kafka client failed for good", extra={"error": str(exc)})
        return EXIT_KAFKA_FAILED
    except JobOverdueError as exc:
        log.critical("exiting: a job outran its deadline; its input is left uncommitted", extra={"error": str(exc)})
        return EXIT_JOB_OVERDUE
    finally:
        if service.webhooks is not None:
            service.webhooks.stop()
        probes.close()
    return worker.exit_code


def _beat_until(heartbeat: Heartbeat, done: threading.Event) -> None:
    """Loading is progress too: keep liveness green until the loop takes over."""
    while not done.wait(1.0):
        heartbeat.beat()


if __name__ == "__main__":
    raise SystemExit(main())

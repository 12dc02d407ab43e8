"""The Knative door: CloudEvents (and MinIO notifications) pushed to ``POST /``.

Answers follow the Knative Eventing data-plane contract (knative/specs
``specs/eventing/data-plane.md``): senders retry 5xx, 404, 409 and 429, a 200 may carry a
reply event, 202 never does. The Kafka broker's and KafkaSource's dispatcher
(knative-extensions/eventing-kafka-broker, ``data-plane/dispatcher/.../impl/BaseResponseHandler.java``)
reads every 2xx body as a CloudEvent and fails the delivery, into the dead-letter sink,
when a non-empty body is not one. So every 2xx here is empty or a binary-mode CloudEvent:

- a sender that is not allowed (``http_shim.sender_auth``): 401, never retried;
- malformed or unsupported input: 400, never retried;
- a permanent job failure (corrupt audio, missing object...): a ``…failed`` event with 200
  (never 404, which Knative would retry);
- transient trouble (storage, model still loading, no free slot, sink down, a body that
  stalled or ended early): 503 with ``Retry-After``, retried;
- nothing to do (a notification without created objects): 202, empty.

Results go back as the reply (binary-mode CloudEvent, 200) for a Broker/Trigger, or, when
``K_SINK`` is set (SinkBinding), are POSTed to the sink and the request gets an empty 202.
A job still running after the reply timeout (or every job with ``RECEIVER_ASYNC``) is
answered 202 at once; it then retries transient failures in place, and its result is sent
to the sink, retried until shutdown (then logged with its result object keys and counted
in ``diarization_results_undelivered_total``).

A notification with several records is one delivery: it is answered 503 if any record is
transient, and the retry finds the records already done in the dedup window (or their
stored results, through ``EventJob``), so only the transient ones run again. The dedup key
is the event's source and id plus a digest of what it asks for: a second event that reuses
an id with other data does not get the first one's answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import urllib3
from flask import Blueprint, Response, request
from prometheus_client import Counter
from werkzeug.exceptions import ClientDisconnected

from consumer import codec
from consumer.analyzer import Reservation
from consumer.config import ReceiverSettings, Settings
from consumer.errors import (
    BusyError,
    InvalidEventError,
    PayloadTooLargeError,
    PublishError,
    ServiceError,
    UnsupportedEventError,
)
from consumer.event_job import EventJob
from consumer.events import AudioJobRequested, DiarizationCompleted, JobFailed, JobOutcome, JobProgressed
from consumer.retry import Backoff
from http_shim.errors import error_response
from http_shim.sender_auth import SenderAuth
from http_shim.state import state

log = logging.getLogger(__name__)

blueprint = Blueprint("receiver", __name__)
EVENTS = Counter("receiver_events_total", "Events received on POST /, by how they were answered", ["answer"])
UNDELIVERED = Counter(
    "diarization_results_undelivered_total",
    "Accepted events whose result never reached K_SINK before shutdown (logged with their result objects)",
)
MAX_DEDUP_ENTRIES = 10_000
# Results kept for answering duplicates, in all: beyond it the oldest finished events leave the
# window early (a duplicate of one is answered from its stored result, without the model).
MAX_KEPT_RESULT_BYTES = 64 * 1024 * 1024
_BACKOFF = Backoff(max_seconds=60.0)

Item = AudioJobRequested | JobFailed
DedupKey = tuple[str, str, str]


@blueprint.post("/")
def receive() -> Response:
    """Take one pushed event; see the module docstring for the answers."""
    receiver = state().receiver
    assert receiver is not None, "the receiver blueprint is registered only with a receiver"
    return receiver.answer_request()


@dataclass
class _Delivery:
    """One event's job, shared by every delivery of the same event."""

    key: DedupKey
    created: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sending: threading.Lock = field(default_factory=threading.Lock)  # one POST to the sink at a time
    outcome: JobOutcome | None = None  # as sent: fitted to RECEIVER_RESULT_MAX_BYTES (codec.fitted)
    size: int = 0  # bytes of the outcome's data, counted against MAX_KEPT_RESULT_BYTES
    error: ServiceError | None = None
    detached: bool = False  # answered 202 while running: the job must reach the sink on its own
    sent: bool = False  # the outcome reached the sink


class Receiver:
    """Runs pushed events through the ``EventJob`` and answers as Knative expects."""

    def __init__(
        self,
        event_job: EventJob,
        settings: Settings,
        backoff: Backoff = _BACKOFF,
        max_entries: int = MAX_DEDUP_ENTRIES,
        max_kept_bytes: int = MAX_KEPT_RESULT_BYTES,
    ) -> None:
        self.event_job = event_job
        self.backoff = backoff
        self.max_entries = max_entries
        self.max_kept_bytes = max_kept_bytes
        self._kept_bytes = 0
        self.settings: ReceiverSettings = settings.receiver
        self.source = settings.events.source
        self.auth = SenderAuth.from_settings(settings.receiver)
        self._deliveries: OrderedDict[DedupKey, _Delivery] = OrderedDict()
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), retries=False)

    def shutdown(self) -> None:
        """The process is stopping: accepted jobs and sink retries give up (logged and counted)."""
        self._stopping.set()

    @property
    def entries(self) -> int:
        """Events in the dedup window, running or done."""
        return len(self._deliveries)

    def answer_request(self) -> Response:
        """The answer to the ``POST /`` being served: the sender checked before any body is read."""
        self.auth.check(request.headers.get("Authorization", ""))
        limit = self.settings.max_event_bytes
        if (request.content_length or 0) > limit:
            raise PayloadTooLargeError(f"events are limited to {limit} bytes")
        # a chunked body declares no length: read one byte past the limit to see it is over
        # (werkzeug stops quietly at max_content_length)
        request.max_content_length = limit + 1
        try:
            body = request.get_data(cache=False)
        except (ClientDisconnected, TimeoutError):
            # the sync API answers 408/400 (http_shim.errors); an event must be retried instead
            EVENTS.labels("retry").inc()
            return error_response(503, "incomplete_body", "the event's body stalled or ended early; send it again")
        if len(body) > limit:
            raise PayloadTooLargeError(f"events are limited to {limit} bytes")
        return self.receive(dict(request.headers.items()), body)

    def receive(self, headers: Mapping[str, str], body: bytes) -> Response:
        """The HTTP answer to one pushed event."""
        try:
            items = codec.decode_http(dict(headers), body)
        except (InvalidEventError, UnsupportedEventError) as exc:
            EVENTS.labels("rejected").inc()
            return error_response(400, exc.code, exc.message)
        if not items:
            EVENTS.labels("ignored").inc()
            return _empty(202)
        return self._answer(items)

    # --- the jobs of one request -----------------------------------------------------------

    def _answer(self, items: list[Item]) -> Response:
        deliveries: list[_Delivery] = []
        transient: ServiceError | None = None
        for item in items:
            try:
                deliveries.append(self._delivery(item))
            except BusyError as exc:  # no slot for this record: nothing was started for it
                transient = transient or exc
        if transient is None:  # a record that could not start means a retry anyway: do not wait
            deadline = time.monotonic() + (0.0 if self.settings.always_async else self.settings.reply_timeout_seconds)
            for delivery in deliveries:
                delivery.done.wait(max(0.0, deadline - time.monotonic()))
        done: list[_Delivery] = []
        running = False
        for delivery in deliveries:
            with delivery.lock:
                if not delivery.done.is_set():
                    running = True
                    delivery.detached = transient is None  # else the retry will find it running
                elif delivery.outcome is None:
                    assert delivery.error is not None
                    transient = transient or delivery.error
                    self._forget(delivery)  # the retry must run this job again
                else:
                    done.append(delivery)
        if self.settings.sink:
            return self._answer_with_sink(done, transient, running)
        if transient is not None:
            return self._retry(transient)
        return self._reply(done, running)

    def _answer_with_sink(self, done: list[_Delivery], transient: ServiceError | None, running: bool) -> Response:
        """Send what is done (even when the request must be retried for other records); 202 or 503."""
        for delivery in done:
            try:
                self._send(delivery)
            except PublishError as exc:
                transient = transient or exc
        if transient is not None:
            return self._retry(transient)
        EVENTS.labels("accepted" if running else "sent").inc()
        return _empty(202)

    def _reply(self, done: list[_Delivery], running: bool) -> Response:
        """Without a sink the result is the reply: one event per request."""
        if running or len(done) != 1:
            log.warning(
                "no K_SINK for these results: they are in the result objects only",
                extra={"jobs": len(done) + running, "detached": running},
            )
            EVENTS.labels("accepted").inc()
            return _empty(202 if running else 200)
        EVENTS.labels("replied").inc()
        outcome = done[0].outcome
        assert outcome is not None
        reply = self._encoded(outcome)
        return Response(reply.body, status=200, headers=reply.headers)

    def _encoded(self, outcome: JobOutcome) -> codec.HttpPayload:
        """The result event as sent (outcomes are kept fitted to ``RECEIVER_RESULT_MAX_BYTES``)."""
        return codec.encode_http(outcome, self.source)

    @staticmethod
    def _retry(error: ServiceError) -> Response:
        EVENTS.labels("retry").inc()
        return error_response(503, error.code, error.message)

    # --- the dedup window ------------------------------------------------------------------

    def _delivery(self, item: Item) -> _Delivery:
        """The delivery of this event: an existing one (dedup), or a new job started now.

        Raises ``BusyError`` when no job slot is free or the window is full of running jobs.
        """
        key = _dedup_key(item)
        with self._guard:
            self._evict()
            existing = self._deliveries.get(key)
            if existing is not None:
                EVENTS.labels("duplicate").inc()
                return existing
            if len(self._deliveries) >= self.max_entries:
                raise BusyError("too many events are still running; retry later")
            delivery = _Delivery(key)
            if isinstance(item, JobFailed):  # a few hundred bytes: not counted
                delivery.outcome = item
                delivery.done.set()
            else:
                reservation = self.event_job.reserve()  # BusyError: nothing was accepted
                threading.Thread(target=self._run, args=(item, delivery, reservation), name="receiver-job").start()
            self._deliveries[key] = delivery
            return delivery

    def _evict(self) -> None:
        """Drop finished entries older than the window, then the oldest finished ones past the
        bounds (``max_entries`` entries, ``max_kept_bytes`` of results). Call with ``_guard`` held.

        Running entries are skipped, never waited for: a job stuck on retries cannot pin the map.
        """
        horizon = time.monotonic() - self.settings.dedup_window_seconds
        doomed: list[DedupKey] = []
        freed = 0
        for key, delivery in self._deliveries.items():
            over = (
                len(self._deliveries) - len(doomed) >= self.max_entries
                or self._kept_bytes - freed > self.max_kept_bytes
            )
            if delivery.created >= horizon and not over:
                break  # entries are in creation order: the rest are younger
            if delivery.done.is_set():
                doomed.append(key)
                freed += delivery.size
        for key in doomed:
            self._drop(key)

    def _drop(self, key: DedupKey) -> None:
        self._kept_bytes -= self._deliveries.pop(key).size

    def _forget(self, delivery: _Delivery) -> None:
        with self._guard:
            if self._deliveries.get(delivery.key) is delivery:
                self._drop(delivery.key)

    def _keep(self, delivery: _Delivery, outcome: JobOutcome) -> None:
        """Set the delivery's outcome as it will be sent, and count its size (takes ``_guard``)."""
        fitted = codec.fitted(outcome, self.settings.max_result_bytes)
        assert not isinstance(fitted, JobProgressed)
        delivery.outcome = fitted
        delivery.size = len(
            json.dumps(codec.completed_data(fitted) if isinstance(fitted, DiarizationCompleted) else {})
        )
        with self._guard:
            self._kept_bytes += delivery.size

    # --- one job ---------------------------------------------------------------------------

    def _run(self, job: AudioJobRequested, delivery: _Delivery, reservation: Reservation) -> None:
        """The job thread (not a daemon: shutdown waits for accepted jobs)."""
        attempt = 0
        while True:
            try:
                outcome = self.event_job.handle(job, reservation=reservation if attempt == 0 else None)
                break
            except ServiceError as exc:  # retryable only
                with delivery.lock:
                    if not delivery.detached:
                        delivery.error = exc
                        delivery.done.set()
                        return
                attempt += 1
                if not self._pause(attempt):
                    UNDELIVERED.inc()
                    log.error(
                        "an accepted event's job was still failing at shutdown; it has no result",
                        extra={"event_id": job.input.id, "source": job.input.source, "error_code": exc.code},
                    )
                    with delivery.lock:
                        delivery.error = exc
                        delivery.done.set()
                    return
        with delivery.lock:
            self._keep(delivery, outcome)
            delivery.done.set()
            detached = delivery.detached
        if detached:
            self._send_until_delivered(delivery)

    # --- the sink --------------------------------------------------------------------------

    def _send(self, delivery: _Delivery) -> None:
        """POST the outcome to K_SINK once (if not sent yet) as a binary-mode CloudEvent; raises ``PublishError``."""
        assert delivery.outcome is not None
        with delivery.sending:
            if delivery.sent:
                return
            event = self._encoded(delivery.outcome)
            try:
                response = self._http.request("POST", self.settings.sink, body=event.body, headers=event.headers)
            except urllib3.exceptions.HTTPError as exc:
                raise PublishError(f"the sink is unreachable: {exc}") from exc
            if not 200 <= response.status < 300:
                raise PublishError(f"the sink answered {response.status}")
            delivery.sent = True

    def _send_until_delivered(self, delivery: _Delivery) -> None:
        if not self.settings.sink:
            log.warning(
                "job finished after its request was answered, and there is no K_SINK; "
                "its result is in the result objects and in the reply to a redelivery"
            )
            return
        attempt = 0
        while True:
            try:
                self._send(delivery)
                return
            except PublishError as exc:
                attempt += 1
                log.warning("sending a result to the sink failed", extra={"error": exc.message, "attempt": attempt})
                if not self._pause(attempt):
                    self._give_up(delivery, exc, attempt)
                    return

    def _give_up(self, delivery: _Delivery, exc: PublishError, attempts: int) -> None:
        outcome = delivery.outcome
        assert outcome is not None
        UNDELIVERED.inc()
        results = {} if isinstance(outcome, JobFailed) else outcome.document.get("results", {})
        event = outcome.input if isinstance(outcome, JobFailed) else outcome.request.input
        log.error(
            "shutting down with a result the sink never took; it stays in the result objects",
            extra={
                "event_id": event.id,
                "source": event.source,
                "result_id": event.result_id(),
                "results": results,
                "error": exc.message,
                "attempts": attempts,
            },
        )

    def _pause(self, attempt: int) -> bool:
        """Back off before retry ``attempt``; False when the process is stopping."""
        return not self._stopping.is_set() and self.backoff.wait(attempt, lambda: not self._stopping.is_set())


def _dedup_key(item: Item) -> DedupKey:
    """Source, id and a digest of what the event asks for."""
    if isinstance(item, JobFailed):
        data = {"object": item.object.to_dict() if item.object else None, "failed": [item.code, item.message]}
    else:
        data = {"object": item.object.to_dict(), "options": item.options.to_dict()}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return item.input.source, item.input.id, digest


def _empty(status: int) -> Response:
    """A 2xx without a body (and without a content type): never mistaken for a reply event."""
    response = Response(b"", status=status)
    del response.headers["Content-Type"]
    return response

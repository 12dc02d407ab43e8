"""The Knative door: CloudEvents (and MinIO notifications) pushed to ``POST /``.

Status codes follow Knative's delivery rules (it retries 5xx, 404, 409 and 429):

- malformed or unsupported input: 400, never retried;
- a permanent job failure (corrupt audio, missing object...): a ``…failed`` event with 200
  (never 404, which Knative would retry);
- transient trouble (storage, model still loading, no free slot, sink down): 503, retried.

Results go back as the reply (binary-mode CloudEvent, 200) for a Broker/Trigger, or, when
``K_SINK`` is set (SinkBinding, or a KafkaSource whose replies are ignored), are POSTed to
the sink and the request gets 202. A job still running after the reply timeout (or every
job with ``RECEIVER_ASYNC``) is answered 202 at once and its result is sent to the sink
when ready; such a job retries transient failures in place, since its event was already
accepted. The same event (source + id) delivered again within the dedup window gets the
same result without recomputation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import urllib3
from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from prometheus_client import Counter

from consumer import codec
from consumer.analyzer import Reservation
from consumer.config import ReceiverSettings, Settings
from consumer.errors import InvalidEventError, PayloadTooLargeError, PublishError, ServiceError, UnsupportedEventError
from consumer.event_job import EventJob
from consumer.events import AudioJobRequested, InputRef, JobFailed, JobOutcome
from consumer.retry import Backoff
from http_shim.errors import error_response
from http_shim.state import state

log = logging.getLogger(__name__)

blueprint = Blueprint("receiver", __name__)
EVENTS = Counter("receiver_events_total", "Events received on POST /, by how they were answered", ["answer"])
_MAX_DEDUP_ENTRIES = 10_000
_BACKOFF = Backoff(max_seconds=60.0)


@blueprint.post("/")
def receive() -> ResponseReturnValue:
    """Take one pushed event; see the module docstring for the answers."""
    receiver = state().receiver
    assert receiver is not None, "the receiver blueprint is registered only with a receiver"
    limit = receiver.settings.max_event_bytes
    if (request.content_length or 0) > limit:
        raise PayloadTooLargeError(f"events are limited to {limit} bytes")
    # a chunked body declares no length: read one byte past the limit to see it is over
    # (werkzeug stops quietly at max_content_length)
    request.max_content_length = limit + 1
    body = request.get_data(cache=False)
    if len(body) > limit:
        raise PayloadTooLargeError(f"events are limited to {limit} bytes")
    return receiver.receive(dict(request.headers.items()), body)


@dataclass
class _Delivery:
    """One event's job, shared by every delivery of the same event."""

    created: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcome: JobOutcome | None = None
    error: ServiceError | None = None
    detached: bool = False  # answered 202: the job must reach the sink on its own
    sent: bool = False  # the outcome reached the sink


class Receiver:
    """Runs pushed events through the ``EventJob`` and answers as Knative expects."""

    def __init__(self, event_job: EventJob, settings: Settings, backoff: Backoff = _BACKOFF) -> None:
        self.event_job = event_job
        self.backoff = backoff
        self.settings: ReceiverSettings = settings.receiver
        self.source = settings.events.source
        self._deliveries: OrderedDict[tuple[str, str], _Delivery] = OrderedDict()
        self._guard = threading.Lock()
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), retries=False)

    def receive(self, headers: Mapping[str, str], body: bytes) -> ResponseReturnValue:
        """The HTTP answer to one pushed event."""
        try:
            items = codec.decode_http(dict(headers), body)
        except (InvalidEventError, UnsupportedEventError) as exc:
            EVENTS.labels("rejected").inc()
            return error_response(400, exc.code, exc.message)
        if not items:
            EVENTS.labels("ignored").inc()
            return jsonify(status="ignored"), 202
        answers = [self._answer(item) for item in items]
        if len(answers) > 1:
            log.warning(
                "one request carried several jobs; the reply holds the first result", extra={"jobs": len(answers)}
            )
        return answers[0]

    # --- one job ---------------------------------------------------------------------------

    def _answer(self, item: AudioJobRequested | JobFailed) -> ResponseReturnValue:
        try:
            delivery = self._delivery(item)
        except ServiceError as exc:  # no free slot: let Knative retry later
            EVENTS.labels("retry").inc()
            return error_response(exc.http_status, exc.code, exc.message)
        timeout = 0.0 if self.settings.always_async else self.settings.reply_timeout_seconds
        finished = delivery.done.wait(timeout)
        with delivery.lock:
            if not finished and not delivery.done.is_set():
                delivery.detached = True
                EVENTS.labels("accepted").inc()
                return jsonify(status="accepted", result_id=item.input.result_id()), 202
        if delivery.outcome is None:
            assert delivery.error is not None
            self._forget(item)  # a retried delivery must run the job again
            EVENTS.labels("retry").inc()
            return error_response(delivery.error.http_status, delivery.error.code, delivery.error.message)
        return self._deliver(delivery)

    def _delivery(self, item: AudioJobRequested | JobFailed) -> _Delivery:
        """The delivery of this event: an existing one (dedup), or a new job started now."""
        key = (item.input.source, item.input.id)
        with self._guard:
            self._evict_expired()
            existing = self._deliveries.get(key)
            if existing is not None:
                EVENTS.labels("duplicate").inc()
                return existing
            delivery = _Delivery()
            if isinstance(item, JobFailed):
                delivery.outcome = item
                delivery.done.set()
            else:
                reservation = self.event_job.reserve()  # BusyError: nothing was accepted
                threading.Thread(target=self._run, args=(item, delivery, reservation), name="receiver-job").start()
            self._deliveries[key] = delivery
            return delivery

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
                self.backoff.wait(attempt)
        with delivery.lock:
            delivery.outcome = outcome
            delivery.done.set()
            detached = delivery.detached
        if detached:
            self._send_until_delivered(delivery)

    # --- replies and the sink --------------------------------------------------------------

    def _deliver(self, delivery: _Delivery) -> ResponseReturnValue:
        assert delivery.outcome is not None
        if not self.settings.sink:
            EVENTS.labels("replied").inc()
            reply = codec.encode_http(delivery.outcome, self.source)
            return Response(reply.body, status=200, headers=reply.headers)
        if not delivery.sent:
            try:
                self._send(delivery)
            except PublishError as exc:
                EVENTS.labels("retry").inc()
                return error_response(503, exc.code, exc.message)
        EVENTS.labels("sent").inc()
        return jsonify(status="sent", result_id=_outcome_input(delivery.outcome).result_id()), 202

    def _send(self, delivery: _Delivery) -> None:
        """POST the outcome to K_SINK as a binary-mode CloudEvent; raises ``PublishError``."""
        assert delivery.outcome is not None
        event = codec.encode_http(delivery.outcome, self.source)
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
        deadline = time.monotonic() + self.settings.sink_retry_seconds
        while not delivery.sent:
            try:
                self._send(delivery)
            except PublishError as exc:
                attempt += 1
                if time.monotonic() > deadline:
                    log.error(
                        "giving up sending a result to the sink; it stays in the result objects and is "
                        "the reply to a redelivery",
                        extra={"error": exc.message, "attempts": attempt},
                    )
                    return
                log.warning("sending a result to the sink failed", extra={"error": exc.message, "attempt": attempt})
                self.backoff.wait(attempt)

    def _forget(self, item: AudioJobRequested | JobFailed) -> None:
        with self._guard:
            self._deliveries.pop((item.input.source, item.input.id), None)

    def _evict_expired(self) -> None:
        horizon = time.monotonic() - self.settings.dedup_window_seconds
        while self._deliveries:
            key, oldest = next(iter(self._deliveries.items()))
            if oldest.created >= horizon and len(self._deliveries) < _MAX_DEDUP_ENTRIES:
                break
            if not oldest.done.is_set():  # never drop a running job's entry
                break
            del self._deliveries[key]


def _outcome_input(outcome: JobOutcome) -> InputRef:
    return outcome.input if isinstance(outcome, JobFailed) else outcome.request.input

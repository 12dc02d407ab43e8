"""A sender that follows Knative Eventing's delivery rules, to drive the receiver as a cluster does.

From the data-plane contract (knative/specs ``specs/eventing/data-plane.md``) and the Kafka
broker's dispatcher (knative-extensions/eventing-kafka-broker, ``BaseResponseHandler.java``):

- POST the event (with ``Prefer: reply``, as brokers do, and the sender's bearer token);
- 5xx, 404, 409, 429 and no answer at all are retried, ``retry`` times, after an
  exponential backoff (``backoff_delay * 2**attempt``) or the ``Retry-After`` the answer
  asks for, whichever is longer;
- any other status ends the delivery: a 2xx is success, anything else goes to the
  dead-letter sink;
- a 2xx with an empty body is success; with a CloudEvent (binary or structured) in the body,
  that event is the reply and goes to the reply sink; with any other non-empty body the
  dispatcher fails the delivery, and the event goes to the dead-letter sink.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

RETRYABLE = frozenset({404, 409, 429})
_CE_REQUIRED = ("ce-specversion", "ce-id", "ce-source", "ce-type")


def is_binary_cloudevent(headers: dict[str, str]) -> bool:
    """Whether HTTP headers carry a binary-mode CloudEvent's required attributes."""
    lower = {name.lower() for name in headers}
    return all(name in lower for name in _CE_REQUIRED)


def is_cloudevent(headers: dict[str, str], body: bytes) -> bool:
    """Whether a response is a CloudEvent, binary or structured mode."""
    if is_binary_cloudevent(headers):
        return True
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if content_type.startswith("application/cloudevents+json"):
        try:
            document = json.loads(body)
        except ValueError:
            return False
        return isinstance(document, dict) and all(k in document for k in ("specversion", "id", "source", "type"))
    return False


def knative_accepts(response: requests.Response) -> bool:
    """Whether Knative's dispatcher takes this 2xx answer: an empty body or a CloudEvent."""
    return 200 <= response.status_code < 300 and (
        not response.content or is_cloudevent(dict(response.headers), response.content)
    )


@dataclass(frozen=True)
class DeliverySpec:
    """A Trigger's or KafkaSource's ``delivery``: retries, exponential backoff, per-attempt timeout."""

    retry: int = 8
    backoff_delay: float = 0.5
    timeout: float = 300.0
    max_retry_after: float = 30.0


@dataclass
class DeliveryResult:
    """What became of one event: the statuses of its attempts, and where it ended."""

    statuses: list[int | None] = field(default_factory=list)
    reply: tuple[dict[str, str], bytes] | None = None
    dead_letter: str | None = None  # why it went to the dead-letter sink

    @property
    def succeeded(self) -> bool:
        return self.dead_letter is None and bool(self.statuses)


@dataclass
class KnativeSender:
    """Delivers events to ``url`` the way Knative does; keeps the reply and dead-letter sinks."""

    url: str
    spec: DeliverySpec = DeliverySpec()
    token: Callable[[], str] | None = None  # the sender's OIDC token, as Knative attaches it
    replies: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    dead_letters: list[tuple[dict[str, str], bytes, str]] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, headers: dict[str, str], body: bytes, result: DeliveryResult | None = None) -> DeliveryResult:
        """One event's delivery, retries included; blocks until it succeeds or is dead-lettered.

        ``result`` (filled in as the attempts happen) lets another thread watch the delivery.
        """
        result = result if result is not None else DeliveryResult()
        for attempt in range(self.spec.retry + 1):
            status, retry_after, response = self._attempt(headers, body)
            result.statuses.append(status)
            if response is not None and 200 <= response.status_code < 300:
                if not response.content:
                    return result
                if is_cloudevent(dict(response.headers), response.content):
                    result.reply = ({k.lower(): v for k, v in response.headers.items()}, response.content)
                    with self._guard:
                        self.replies.append(result.reply)
                    return result
                return self._dead_letter(result, headers, body, f"{status} with a body that is no CloudEvent")
            if status is not None and not (status >= 500 or status in RETRYABLE):
                return self._dead_letter(result, headers, body, f"answered {status}")
            if attempt == self.spec.retry:
                break
            time.sleep(max(self.spec.backoff_delay * 2**attempt, min(retry_after, self.spec.max_retry_after)))
        return self._dead_letter(result, headers, body, f"retries exhausted (last {result.statuses[-1]})")

    def _attempt(self, headers: dict[str, str], body: bytes) -> tuple[int | None, float, requests.Response | None]:
        sent = {**headers, "Prefer": "reply"}
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token()}"
        try:
            response = requests.post(self.url, data=body, headers=sent, timeout=self.spec.timeout)
        except requests.RequestException:
            return None, 0.0, None
        retry_after = response.headers.get("Retry-After", "")
        return response.status_code, float(retry_after) if retry_after.isdigit() else 0.0, response

    def _dead_letter(self, result: DeliveryResult, headers: dict[str, str], body: bytes, why: str) -> DeliveryResult:
        result.dead_letter = why
        with self._guard:
            self.dead_letters.append((headers, body, why))
        return result

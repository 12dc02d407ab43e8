"""Webhooks of ``/v1/jobs``: a job's outcome POSTed to its ``webhook_url``, signed, retried for a day.

Signed as the Standard Webhooks specification says (https://www.standardwebhooks.com/):
``webhook-id`` (one per job: every retry of it carries the same id, so a receiver can
deduplicate), ``webhook-timestamp`` (seconds, the time of the attempt) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, keyed by the
base64 bytes of the deployment's ``whsec_`` secret. The signature is one call of the
standard library's ``hmac``; the reference package adds nothing to it but a verifier, so
the service does not depend on it (the tests check the reference's own test vector).

Durable: when a job finishes, the consumer stores the delivery in an outbox in the results
bucket (``<results prefix>.webhooks/<due ms>-<job id>.json``; a bucket name cannot start with
a dot, so no result key can collide) before the job's input is committed, and every
consumer's ``WebhookDispatcher`` sends what is due. An attempt first moves the entry a
claim's length into the future, so a consumer that dies mid-send leaves it to be sent again
and two consumers rarely send the same entry at once: delivery is at least once, with one
``webhook-id`` per job. A 2xx delivers; 410 Gone stops; anything else is retried after
``RETRY_DELAYS`` (about 23.6 hours in all), then the entry is kept under ``.webhooks-exhausted/``.

Server-side request forgery is refused by default (``check_url``), when a job is submitted
and again before every attempt (a name may resolve elsewhere by then).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3

from consumer import metrics
from consumer.config import WebhookSettings, webhook_signing_key
from consumer.errors import ServiceError, WebhookUrlRefusedError
from consumer.jobs import JobLayout, JobObjects

log = logging.getLogger(__name__)

# seconds before the 2nd, 3rd, ... attempt: about 23.6 hours from the first to the last
RETRY_DELAYS = (5, 15, 60, 300, 1800, 3600, 7200, 14400, 28800, 28800)
POLL_SECONDS = 2.0
OUTBOX = ".webhooks/"
EXHAUSTED = ".webhooks-exhausted/"
# names that only mean something inside a cluster or a private network
_INTERNAL_SUFFIXES = (".local", ".localhost", ".internal", ".svc", ".cluster.local", ".home.arpa")

Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (an address resolves to itself); blocks on DNS."""
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})
    except (OSError, UnicodeError) as exc:
        raise WebhookUrlRefusedError(f"the webhook's host {host!r} does not resolve: {exc}") from exc


def check_url(url: str, settings: WebhookSettings, resolver: Resolver = resolve) -> None:
    """Refuse (``WebhookUrlRefusedError``, 400) a ``webhook_url`` the service must not call.

    Only ``https`` unless ``WEBHOOK_ALLOW_HTTP``; no credentials in the URL; and no host that
    is, or resolves to, a loopback, link-local, private, shared, reserved or multicast address,
    nor a cluster-internal name (no dot, ``.svc``, ``.local``, ...), unless
    ``WEBHOOK_ALLOWED_HOSTS`` names the host or holds one of its addresses (or their network).
    """
    if len(url) > 2048:
        raise WebhookUrlRefusedError("the webhook_url is longer than 2048 characters")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise WebhookUrlRefusedError(f"the webhook_url is not a URL: {exc}") from exc
    schemes = ("https", "http") if settings.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise WebhookUrlRefusedError(f"a webhook_url must be {' or '.join(schemes)}, not {parts.scheme or 'empty'!r}")
    if not host:
        raise WebhookUrlRefusedError("the webhook_url names no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefusedError("a webhook_url must not carry credentials")
    host = host.rstrip(".").lower()
    if host in settings.allowed_hosts:
        return
    internal = not _is_address(host) and ("." not in host or host.endswith(_INTERNAL_SUFFIXES))
    try:
        addresses = resolver(host)
    except WebhookUrlRefusedError:
        if internal:  # the clearer reason
            raise WebhookUrlRefusedError(f"the webhook's host {host!r} is a cluster-internal name") from None
        raise
    if addresses and all(_allowed(address, settings.allowed_hosts) for address in addresses):
        return
    if internal:
        raise WebhookUrlRefusedError(f"the webhook's host {host!r} is a cluster-internal name")
    if not addresses:
        raise WebhookUrlRefusedError(f"the webhook's host {host!r} does not resolve")
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise WebhookUrlRefusedError(
                f"the webhook's host {host!r} is a non-public address ({address}); WEBHOOK_ALLOWED_HOSTS can allow it"
            )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _allowed(address: str, allowed: frozenset[str]) -> bool:
    """Whether an allow-list entry is ``address`` or a network holding it."""
    ip = ipaddress.ip_address(address.split("%")[0])
    for entry in allowed:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:  # a host name: compared before resolving
            continue
    return False


def sign(key: bytes, webhook_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header of ``body``: ``v1,<base64 HMAC-SHA256>``."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook to send: the job, its URL, the exact body, and how it went so far."""

    job_id: str
    url: str
    body: str
    attempts: int = 0
    first_at: float = 0.0
    last_error: str = ""

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.job_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "url": self.url,
            "body": self.body,
            "attempts": self.attempts,
            "first_at": self.first_at,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delivery:
        return cls(
            str(data["job_id"]),
            str(data["url"]),
            str(data["body"]),
            int(data.get("attempts", 0)),
            float(data.get("first_at", 0.0)),
            str(data.get("last_error", "")),
        )


class Outbox:
    """Deliveries waiting in the results bucket, keyed by when they are due (``<ms>-<job id>.json``)."""

    def __init__(self, store: JobObjects, layout: JobLayout) -> None:
        self.store = store
        self.bucket = layout.results_bucket
        self.prefix = f"{layout.results_prefix}{OUTBOX}"
        self.exhausted_prefix = f"{layout.results_prefix}{EXHAUSTED}"

    def add(self, delivery: Delivery, due: float) -> str:
        """Store ``delivery`` to be sent at ``due`` (epoch seconds); returns its key. Blocks;
        raises ``StorageUnavailableError`` (retryable) when the store fails."""
        key = f"{self.prefix}{int(due * 1000):013d}-{delivery.job_id}.json"
        self.store.put_json(self.bucket, key, delivery.to_dict())
        return key

    def due(self, now: float, limit: int = 50) -> list[str]:
        """Keys of the deliveries due at ``now``, the earliest first."""
        keys = self.store.list_keys(self.bucket, self.prefix, limit=limit)
        return [key for key in keys if _due_ms(key[len(self.prefix) :]) <= now * 1000]

    def read(self, key: str) -> Delivery | None:
        """The delivery at ``key``, or None when another consumer took it (or it is malformed)."""
        data = self.store.get_json(self.bucket, key)
        try:
            return Delivery.from_dict(data) if data is not None else None
        except (KeyError, TypeError, ValueError):
            log.error("a malformed webhook delivery is set aside", extra={"key": key})
            self.store.remove(self.bucket, key)
            return None

    def move(self, key: str, delivery: Delivery, due: float) -> str:
        """Store ``delivery`` under its new due time, then remove ``key``; returns the new key."""
        new_key = self.add(delivery, due)
        self.store.remove(self.bucket, key)
        return new_key

    def finished(self, job: dict[str, Any]) -> None:
        """Queue the webhook of ``job`` (``GET /v1/jobs/{id}``'s answer), due now (``consumer.jobs.Notifier``)."""
        now = time.time()
        self.add(Delivery(str(job["id"]), str(job["webhook_url"]), payload(job, str(job["status"]), now), 0, now), now)
        log.info("webhook queued", extra={"job_id": job["id"], "status": job["status"]})

    def remove(self, key: str) -> None:
        self.store.remove(self.bucket, key)

    def set_aside(self, key: str, delivery: Delivery) -> None:
        """Keep a delivery that will not be tried again under ``.webhooks-exhausted/``."""
        self.store.put_json(self.bucket, f"{self.exhausted_prefix}{delivery.job_id}.json", delivery.to_dict())
        self.store.remove(self.bucket, key)


def _due_ms(name: str) -> int:
    head = name.partition("-")[0]
    return int(head) if head.isdigit() else 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one POST went: delivered (2xx), gone (410: never again), or failed with a reason."""

    delivered: bool
    gone: bool = False
    error: str = ""


class WebhookSender:
    """POSTs a signed delivery; never follows redirects (a redirect could lead anywhere)."""

    def __init__(self, settings: WebhookSettings, resolver: Resolver = resolve) -> None:
        """``settings.secret`` must be set (``ValueError`` otherwise): nothing is sent unsigned."""
        self.settings = settings
        self.resolver = resolver
        self.key = webhook_signing_key(settings.secret.value)
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=settings.timeout_seconds))

    def send(self, delivery: Delivery, now: float | None = None) -> Attempt:
        """One attempt; blocks up to ``WEBHOOK_TIMEOUT_SECONDS``. Never raises."""
        try:
            check_url(delivery.url, self.settings, self.resolver)
        except WebhookUrlRefusedError as exc:
            return Attempt(False, error=exc.message)
        timestamp = int(time.time() if now is None else now)
        headers = {
            "content-type": "application/json",
            "user-agent": "diarization-service-webhooks",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.key, delivery.webhook_id, timestamp, delivery.body),
        }
        try:
            response = self.http.request(
                "POST", delivery.url, body=delivery.body.encode(), headers=headers, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status < 300:
            return Attempt(True)
        return Attempt(False, gone=response.status == 410, error=f"the receiver answered {response.status}")


class WebhookDispatcher:
    """Sends the outbox's due deliveries, one at a time, in a daemon thread of each consumer."""

    def __init__(self, outbox: Outbox, sender: WebhookSender) -> None:
        self.outbox = outbox
        self.sender = sender
        self.claim_seconds = sender.settings.timeout_seconds + 30.0  # an attempt ends well within it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sending in a daemon thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Send nothing more (a delivery already being sent finishes or is claimed again later)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.send_due()
            except ServiceError as exc:  # the store is down: the deliveries wait in it
                log.warning("webhook outbox unavailable", extra={"error_code": exc.code, "error": exc.message})
            except Exception:
                log.exception("webhook dispatch crashed; retrying")

    def send_due(self, now: float | None = None) -> int:
        """Try every delivery due now; returns how many were tried. Blocks; raises ``ServiceError``
        when the store fails (what was not moved yet stays due)."""
        tried = 0
        for key in self.outbox.due(time.time() if now is None else now):
            if self._stop.is_set():
                break
            delivery = self.outbox.read(key)
            if delivery is None:
                continue
            started = time.time()
            delivery = Delivery(
                delivery.job_id,
                delivery.url,
                delivery.body,
                delivery.attempts + 1,
                delivery.first_at or started,
                delivery.last_error,
            )
            claimed = self.outbox.move(key, delivery, started + self.claim_seconds)
            self._settle(claimed, delivery, self.sender.send(delivery), started)
            tried += 1
        return tried

    def _settle(self, key: str, delivery: Delivery, attempt: Attempt, started: float) -> None:
        fields = {
            "job_id": delivery.job_id,
            "webhook_id": delivery.webhook_id,
            "attempt": delivery.attempts,
            "seconds": round(time.time() - started, 3),
        }
        if attempt.delivered:
            self.outbox.remove(key)
            metrics.WEBHOOKS.labels("delivered").inc()
            log.info("webhook delivered", extra=fields)
            return
        failed = Delivery(
            delivery.job_id, delivery.url, delivery.body, delivery.attempts, delivery.first_at, attempt.error
        )
        if attempt.gone or delivery.attempts > len(RETRY_DELAYS):
            self.outbox.set_aside(key, failed)
            metrics.WEBHOOKS.labels("given_up").inc()
            log.error("webhook given up", extra={**fields, "error": attempt.error})
            return
        delay = RETRY_DELAYS[delivery.attempts - 1]
        self.outbox.move(key, failed, time.time() + delay)
        metrics.WEBHOOKS.labels("retried").inc()
        log.warning("webhook will be retried", extra={**fields, "error": attempt.error, "retry_in_seconds": delay})


def payload(job: dict[str, Any], status: str, now: float | None = None) -> str:
    """The body POSTed for a finished job: ``{"type": "job.<status>", "timestamp", "data": job}``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    return json.dumps({"type": f"job.{status}", "timestamp": stamp, "data": job}, separators=(",", ":"))

"""Who may use the shim's doors: the API key of the public API, and the rule that no door opens by default.

The public API (``/v1/*``, ``/metrics``) needs ``Authorization: Bearer <API_KEY>``; a shim
without a key refuses to start unless the API is opened on purpose (``API_AUTH=none``). The
Knative receiver (``POST /``) checks its senders (``http_shim.sender_auth``); an enabled
receiver with no check configured refuses to start unless opened on purpose
(``RECEIVER_AUTH=none``). Opening a door is therefore always a line in the deployment.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import request

from consumer.config import Settings, SettingsError
from consumer.errors import UnauthorizedError

log = logging.getLogger(__name__)


def check_doors(settings: Settings) -> None:
    """Raise ``SettingsError`` when the settings would open a door nobody chose to open."""
    http = settings.http
    if http.api_auth == "key" and not http.api_key:
        raise SettingsError(
            "API_KEY is not set: the API (/v1/*, /metrics) needs a key (`make create-secret` generates one); "
            "to open the API to anyone who reaches the shim, set API_AUTH=none"
        )
    if http.api_auth == "none" and http.api_key:
        raise SettingsError("API_AUTH=none and API_KEY are both set: choose one")
    if http.api_auth == "none":
        log.warning("the API is open: API_AUTH=none, every client that reaches the shim may use it")


def require_api_key(settings: Settings) -> None:
    """Raise ``UnauthorizedError`` unless this request carries the API key (when the API has one)."""
    if settings.http.api_auth == "key":
        require_bearer(request.headers.get("Authorization", ""), settings.http.api_key.value)


def require_bearer(header: str, key: str) -> None:
    """Raise ``UnauthorizedError`` unless ``header`` is ``Bearer <key>``; constant-time, never for an empty key."""
    scheme, _, provided = header.partition(" ")
    # Digests have equal lengths, so the comparison time does not depend on the key's length either.
    same = hmac.compare_digest(
        hashlib.sha256(provided.strip().encode()).digest(), hashlib.sha256(key.encode()).digest()
    )
    if scheme.lower() != "bearer" or not key or not same:
        raise UnauthorizedError("missing or wrong key (Authorization: Bearer <key>)")

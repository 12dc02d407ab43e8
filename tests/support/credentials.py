"""The credentials tests run with: a shim, as deployed, opens no door without a key or a sender check."""

from __future__ import annotations

from typing import Any

API_KEY = "tests-api-k3y"
API_AUTH = {"Authorization": f"Bearer {API_KEY}"}
RECEIVER_TOKEN = "tests-sender-t0ken"
SENDER_AUTH = {"Authorization": f"Bearer {RECEIVER_TOKEN}"}
# Knative's sender tokens name a service account of the sender's namespace (tests.support.oidc)
SENDER_NAMESPACE = "system:serviceaccount:diarization:"


def authorized(client: Any) -> Any:
    """A Flask test client that sends the tests' API key with every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = API_AUTH["Authorization"]
    return client

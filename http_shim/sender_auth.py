"""Who may POST events to the receiver: a shared bearer token and/or Knative's OIDC sender tokens.

With Knative Eventing's ``authentication-oidc`` feature, a source, Trigger or Subscription
asks the cluster for a token issued to its own service account for the target's audience
and sends it as ``Authorization: Bearer <JWT>`` (knative.dev/eventing
``pkg/kncloudevents/event_dispatcher.go``). The tokens are Kubernetes service-account
tokens: RS256, issued by the cluster's issuer, whose keys are the JWKS named by the
issuer's discovery document (``<issuer>/.well-known/openid-configuration``). Knative's
own receivers check audience and issuer and answer 401 otherwise (``pkg/auth/verifier.go``);
so does this one.

Only RS256 is accepted (``http_shim.rs256``): ``none``, the HMAC algorithms (a public
key used as an HMAC secret) and everything else are refused before any key is looked at.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import urllib3

from consumer.config import ReceiverSettings, SettingsError
from consumer.errors import SenderKeysUnavailableError, UnauthorizedError
from http_shim.api import require_bearer
from http_shim.rs256 import InvalidKeyError, RsaPublicKey, b64url_decode, verify

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 30.0  # clock skew tolerated on exp and nbf
REFRESH_INTERVAL_SECONDS = 10.0  # an unknown kid refetches the keys at most this often
KEYS_MAX_AGE_SECONDS = 3600.0  # known keys are refetched this often (rotation)
_MAX_DOCUMENT_BYTES = 1024 * 1024
_MAX_TOKEN_BYTES = 16 * 1024


class KeySource(Protocol):
    """Where the issuer's verification keys come from (``JwksClient``).

    ``keys`` returns the key set, ``refresh=True`` asks for a fresh copy; both raise
    ``SenderKeysUnavailableError`` when the keys cannot be had at all.
    """

    def keys(self, refresh: bool = False) -> dict[str, RsaPublicKey]:
        """Key id -> key; a key without ``kid`` is under ``""``."""
        ...


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says: who sent it."""

    subject: str
    issuer: str


class OidcVerifier:
    """Checks an RS256 JWT: signature by a key of the issuer, ``iss``, ``aud``, ``exp`` and ``nbf``."""

    def __init__(self, issuer: str, audience: str, keys: KeySource, clock: Callable[[], float] = time.time) -> None:
        self.issuer, self.audience, self._keys, self._clock = issuer, audience, keys, clock

    def verify(self, token: str) -> Claims:
        """The token's claims; ``UnauthorizedError`` for any token that does not pass every check."""
        if len(token) > _MAX_TOKEN_BYTES:
            raise UnauthorizedError("the token is too large")
        parts = token.split(".")
        if len(parts) != 3:
            raise UnauthorizedError("the bearer token is not a JWT")
        header, payload = _json_part(parts[0]), _json_part(parts[1])
        algorithm = header.get("alg")
        if algorithm != "RS256":
            raise UnauthorizedError(f"token algorithm {algorithm!r} is not accepted; only RS256")
        try:
            signature = b64url_decode(parts[2])
        except ValueError:
            raise UnauthorizedError("the token's signature is not base64url") from None
        kid = header.get("kid", "")
        key = self._key(kid if isinstance(kid, str) else "")
        if not verify(key, f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
            raise UnauthorizedError("the token's signature does not verify")
        self._check_claims(payload)
        return Claims(str(payload.get("sub", "")), self.issuer)

    def _key(self, kid: str) -> RsaPublicKey:
        key = self._keys.keys().get(kid)
        if key is None:  # rotated keys: fetch once more (rate-limited by the source)
            key = self._keys.keys(refresh=True).get(kid)
        if key is None:
            raise UnauthorizedError(f"no key of the issuer has kid {kid!r}")
        return key

    def _check_claims(self, payload: dict[str, Any]) -> None:
        if payload.get("iss") != self.issuer:
            raise UnauthorizedError(f"the token's issuer {payload.get('iss')!r} is not {self.issuer!r}")
        audiences = payload.get("aud")
        if isinstance(audiences, str):
            audiences = [audiences]
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise UnauthorizedError(f"the token is not for audience {self.audience!r}")
        now = self._clock()
        expires = payload.get("exp")
        if not isinstance(expires, (int, float)) or isinstance(expires, bool) or now > expires + LEEWAY_SECONDS:
            raise UnauthorizedError("the token has expired (or has no exp)")
        not_before = payload.get("nbf")
        if not_before is not None and (not _is_number(not_before) or now < not_before - LEEWAY_SECONDS):
            raise UnauthorizedError("the token is not valid yet")


class JwksClient:
    """The issuer's JWKS over HTTP(S), cached; refetched on an unknown kid and when old.

    The JWKS address is ``jwks_url``, or the ``jwks_uri`` of the issuer's discovery
    document. On Kubernetes both need the pod's service-account token (``token_file``)
    and the cluster's CA (``ca_bundle``).
    """

    def __init__(
        self,
        issuer: str,
        jwks_url: str = "",
        ca_bundle: str = "",
        token_file: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer, self.jwks_url, self.token_file, self._clock = issuer, jwks_url, token_file, clock
        pool_options: dict[str, Any] = {"ca_certs": ca_bundle} if ca_bundle else {}
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=5), retries=False, **pool_options)
        self._guard = threading.Lock()
        self._keys: dict[str, RsaPublicKey] | None = None
        self._fetched = float("-inf")

    def keys(self, refresh: bool = False) -> dict[str, RsaPublicKey]:
        """See ``KeySource``."""
        with self._guard:
            age = self._clock() - self._fetched
            stale = self._keys is None or age > KEYS_MAX_AGE_SECONDS or (refresh and age > REFRESH_INTERVAL_SECONDS)
            if stale:
                try:
                    self._keys = self._fetch()
                    self._fetched = self._clock()
                except SenderKeysUnavailableError:
                    if self._keys is None:
                        raise
                    log.warning("refetching the token issuer's keys failed; keeping the known ones")
            assert self._keys is not None
            return self._keys

    def _fetch(self) -> dict[str, RsaPublicKey]:
        url = self.jwks_url
        if not url:
            discovery = self._get_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            url = discovery.get("jwks_uri", "")
            if not isinstance(url, str) or not url:
                raise SenderKeysUnavailableError("the issuer's discovery document names no jwks_uri")
        keys: dict[str, RsaPublicKey] = {}
        entries = self._get_json(url).get("keys")
        for jwk in entries if isinstance(entries, list) else []:
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
                continue
            try:
                keys[str(jwk.get("kid", ""))] = RsaPublicKey.from_jwk(jwk)
            except (InvalidKeyError, ValueError) as exc:
                log.warning("skipping a key of the token issuer", extra={"kid": jwk.get("kid"), "error": str(exc)})
        log.info("fetched the token issuer's keys", extra={"url": url, "kids": sorted(keys)})
        return keys

    def _get_json(self, url: str) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.token_file:
            headers["Authorization"] = f"Bearer {Path(self.token_file).read_text().strip()}"
        try:
            response = self._http.request("GET", url, headers=headers, preload_content=False)
            body = response.read(_MAX_DOCUMENT_BYTES + 1)
            response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SenderKeysUnavailableError(f"cannot fetch {url}: {exc}") from exc
        if response.status != 200 or len(body) > _MAX_DOCUMENT_BYTES:
            raise SenderKeysUnavailableError(f"{url} answered {response.status}")
        try:
            document = json.loads(body)
        except ValueError:
            raise SenderKeysUnavailableError(f"{url} did not answer JSON") from None
        if not isinstance(document, dict):
            raise SenderKeysUnavailableError(f"{url} did not answer a JSON object")
        return document


class SenderAuth:
    """The receiver's door check: open when nothing is configured, else a valid token of either kind."""

    def __init__(self, shared_token: str = "", oidc: OidcVerifier | None = None) -> None:
        self.shared_token, self.oidc = shared_token, oidc

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> SenderAuth:
        """As configured by the ``RECEIVER_TOKEN`` and ``RECEIVER_OIDC_*`` variables; ``SettingsError`` if incomplete."""
        oidc = None
        if settings.oidc_issuer:
            if not settings.oidc_audience:
                raise SettingsError(
                    "RECEIVER_OIDC_ISSUER needs RECEIVER_OIDC_AUDIENCE: the audience its tokens are for"
                )
            keys = JwksClient(
                settings.oidc_issuer,
                settings.oidc_jwks_url,
                settings.oidc_ca_bundle,
                settings.oidc_fetch_token_file,
            )
            oidc = OidcVerifier(settings.oidc_issuer, settings.oidc_audience, keys)
        return cls(settings.token.value, oidc)

    @property
    def required(self) -> bool:
        return bool(self.shared_token) or self.oidc is not None

    def check(self, authorization: str) -> None:
        """Raise ``UnauthorizedError`` (or ``SenderKeysUnavailableError``) unless the sender may post."""
        if not self.required:
            return
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("send Authorization: Bearer <token>")
        if self.shared_token:
            try:
                require_bearer(authorization, self.shared_token)
                return
            except UnauthorizedError:
                if self.oidc is None:
                    raise
        assert self.oidc is not None
        self.oidc.verify(token.strip())


def _json_part(part: str) -> dict[str, Any]:
    try:
        document = json.loads(b64url_decode(part))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UnauthorizedError("the token is not a JWT") from None
    if not isinstance(document, dict):
        raise UnauthorizedError("the token is not a JWT")
    return document


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

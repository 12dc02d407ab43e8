"""Who may POST events to the receiver: a shared bearer token and/or Knative's OIDC sender tokens.

With Knative Eventing's ``authentication-oidc`` feature, a source, Trigger or Subscription
asks the cluster for a token issued to its own dedicated service account (in its own
namespace) for the target's audience and sends it as ``Authorization: Bearer <JWT>``
(knative.dev/eventing ``pkg/kncloudevents/event_dispatcher.go``). The tokens are Kubernetes
service-account tokens: RS256, issued by the cluster's issuer, whose keys are the JWKS named
by the issuer's discovery document (``<issuer>/.well-known/openid-configuration``).
Knative's own receivers check audience and issuer and, by default, admit senders of their
own namespace only (EventPolicy); so does this one: besides signature, ``iss``, ``aud``,
``exp`` and ``nbf``, the token's subject must be on ``RECEIVER_OIDC_ALLOWED_SUBJECTS``
(exact names, or ``system:serviceaccount:<namespace>:`` prefixes).

Signatures and claims are checked by PyJWT (with ``cryptography``), RS256 only: ``none``,
the HMAC algorithms (a public key used as an HMAC secret) and everything else are refused
before any key is looked at. What the library leaves to its caller is here: the token's
compact form is checked strictly first (PyJWT's base64url decoder skips characters outside
the alphabet), keys under 2048 bits are not used, ``exp``/``nbf``/``iat`` must be finite
numbers, and the issuer's keys come from ``JwksClient``, whose refetches are rate-limited
also while the issuer fails (PyJWT's ``PyJWKClient`` refetches on every unknown ``kid``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import urllib3
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from consumer.config import ReceiverSettings, SettingsError
from consumer.errors import SenderKeysUnavailableError, UnauthorizedError
from http_shim.auth import require_bearer

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 30.0  # clock skew tolerated on exp and nbf
REFRESH_INTERVAL_SECONDS = 10.0  # at most one fetch of the keys this often, failed ones included
KEYS_MAX_AGE_SECONDS = 3600.0  # known keys are refetched this often (rotation)
MIN_KEY_BITS = 2048
_MAX_DOCUMENT_BYTES = 1024 * 1024
_MAX_TOKEN_BYTES = 16 * 1024
# A JWS in compact serialization (RFC 7515 section 7.1): three base64url parts (section 2).
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class KeySource(Protocol):
    """Where the issuer's verification keys come from (``JwksClient``)."""

    def key(self, kid: str) -> RSAPublicKey:
        """The issuer's key ``kid`` (``""`` for a key without one); blocks while the keys are fetched.

        Raises ``UnauthorizedError`` when the issuer's current keys have no such key, and
        ``SenderKeysUnavailableError`` (retryable) when the keys cannot be had, or when an
        unknown ``kid`` cannot be looked up because the last fetch failed.
        """
        ...


@dataclass(frozen=True, slots=True)
class SubjectRule:
    """Which token subjects may send: exact names, and prefixes (the entries that end in ``:``)."""

    entries: frozenset[str]

    def allows(self, subject: str) -> bool:
        """Whether ``subject`` is one of the names or starts with one of the prefixes."""
        return any(subject == entry or (entry.endswith(":") and subject.startswith(entry)) for entry in self.entries)


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says: who sent it."""

    subject: str
    issuer: str


class OidcVerifier:
    """Checks an RS256 JWT: its form, a signature by a key of the issuer, the claims and the sender."""

    def __init__(self, issuer: str, audience: str, keys: KeySource, senders: SubjectRule) -> None:
        self.issuer, self.audience, self._keys, self.senders = issuer, audience, keys, senders

    def verify(self, token: str) -> Claims:
        """The token's claims; ``UnauthorizedError`` for any token that does not pass every check."""
        if len(token) > _MAX_TOKEN_BYTES:
            raise UnauthorizedError("the token is too large")
        if not _COMPACT.fullmatch(token) or not all(_canonical(part) for part in token.split(".")):
            raise UnauthorizedError("the bearer token is not a JWT in compact form (RFC 7515: base64url parts)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise UnauthorizedError("the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm != "RS256":
            raise UnauthorizedError(f"token algorithm {algorithm!r} is not accepted; only RS256")
        kid = header.get("kid", "")
        key = self._keys.key(kid if isinstance(kid, str) else "")
        payload = self._decode(token, key)
        for claim in ("exp", "nbf", "iat"):
            if claim in payload and not _is_seconds(payload[claim]):
                raise UnauthorizedError(f"the token's {claim} is not a number of seconds")
        subject = payload["sub"]
        if not isinstance(subject, str) or not self.senders.allows(subject):
            raise UnauthorizedError(f"sender {subject!r} may not post events here (RECEIVER_OIDC_ALLOWED_SUBJECTS)")
        return Claims(subject, self.issuer)

    def _decode(self, token: str, key: RSAPublicKey) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidSignatureError:
            raise UnauthorizedError("the token's signature does not verify") from None
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise UnauthorizedError("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise UnauthorizedError(f"the token is not for audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise UnauthorizedError(f"the token's issuer is not {self.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise UnauthorizedError(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidTokenError as exc:
            raise UnauthorizedError(f"the token is not valid: {exc}") from None
        return payload


class JwksClient:
    """The issuer's JWKS over HTTP(S), cached; refetched on an unknown kid and when old.

    The JWKS address is ``jwks_url``, or the ``jwks_uri`` of the issuer's discovery
    document. On Kubernetes both need the pod's service-account token (``token_file``)
    and the cluster's CA (``ca_bundle``). Requests whose key is known never wait for a
    fetch; at most one fetch runs at a time, and at most one starts per
    ``REFRESH_INTERVAL_SECONDS``, whether the last one succeeded or not.
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
        self._fetching = threading.Lock()
        self._keys: dict[str, RSAPublicKey] | None = None
        self._fetched = float("-inf")  # the last fetch that succeeded
        self._attempted = float("-inf")  # the last fetch, whatever its outcome
        self._failure: SenderKeysUnavailableError | None = None  # of the last fetch

    def key(self, kid: str) -> RSAPublicKey:
        """See ``KeySource``."""
        keys = self._keys
        if keys is None:
            keys = self._refresh(wait=True)
        elif self._clock() - self._fetched > KEYS_MAX_AGE_SECONDS:
            keys = self._refresh(wait=False)  # rotation: whoever gets there first refetches
        found = keys.get(kid)
        if found is None:
            found = self._refresh(wait=True).get(kid)
        if found is not None:
            return found
        if self._failure is not None:  # the keys may have rotated while the issuer fails
            raise SenderKeysUnavailableError(f"no known key has kid {kid!r}, and {self._failure.message}")
        raise UnauthorizedError(f"no key of the issuer has kid {kid!r}")

    def _refresh(self, wait: bool) -> dict[str, RSAPublicKey]:
        """The keys, fetched again unless a fetch started less than ``REFRESH_INTERVAL_SECONDS`` ago.

        ``wait=False``: when another thread is fetching, the known keys at once.
        """
        if not self._fetching.acquire(blocking=wait):
            assert self._keys is not None
            return self._keys
        try:
            now = self._clock()
            if now - self._attempted >= REFRESH_INTERVAL_SECONDS:
                self._attempted = now
                try:
                    self._keys, self._fetched, self._failure = self._fetch(), now, None
                except SenderKeysUnavailableError as exc:
                    self._failure = exc
                    log.warning("fetching the token issuer's keys failed", extra={"error": exc.message})
            if self._keys is None:
                raise self._failure or SenderKeysUnavailableError("the token issuer's keys were never fetched")
            return self._keys
        finally:
            self._fetching.release()

    def _fetch(self) -> dict[str, RSAPublicKey]:
        url = self.jwks_url
        if not url:
            discovery = self._get_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            url = discovery.get("jwks_uri", "")
            if not isinstance(url, str) or not url:
                raise SenderKeysUnavailableError("the issuer's discovery document names no jwks_uri")
        keys: dict[str, RSAPublicKey] = {}
        entries = self._get_json(url).get("keys")
        for jwk in entries if isinstance(entries, list) else []:
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
                continue
            try:
                keys[str(jwk.get("kid", ""))] = rsa_key(jwk)
            except ValueError as exc:
                log.warning("skipping a key of the token issuer", extra={"kid": jwk.get("kid"), "error": str(exc)})
        log.info("fetched the token issuer's keys", extra={"url": url, "kids": sorted(keys)})
        return keys

    def _get_json(self, url: str) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        try:
            if self.token_file:
                headers["Authorization"] = f"Bearer {Path(self.token_file).read_text().strip()}"
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


def rsa_key(jwk: dict[str, Any]) -> RSAPublicKey:
    """The RSA public key of a JWK (RFC 7518 section 6.3.1); ``ValueError`` unless it is one of at least 2048 bits."""
    if jwk.get("kty") != "RSA":
        raise ValueError(f"not an RSA key (kty {jwk.get('kty')!r})")
    try:
        key = jwt.PyJWK(jwk, algorithm="RS256").key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise ValueError(f"not a usable RSA key: {exc}") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError("not an RSA public key")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"RSA keys must have at least {MIN_KEY_BITS} bits, this one has {key.key_size}")
    return key


class SenderAuth:
    """The receiver's door check: a valid token of either kind, or nothing when opened on purpose."""

    def __init__(self, shared_token: str = "", oidc: OidcVerifier | None = None) -> None:
        self.shared_token, self.oidc = shared_token, oidc

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> SenderAuth:
        """As configured by ``RECEIVER_AUTH``, ``RECEIVER_TOKEN`` and ``RECEIVER_OIDC_*``.

        Raises ``SettingsError`` when no check is configured and the door was not opened
        with ``RECEIVER_AUTH=none``, or when the OIDC settings are incomplete.
        """
        configured = bool(settings.token) or bool(settings.oidc_issuer)
        if settings.auth == "none":
            if configured:
                raise SettingsError("RECEIVER_AUTH=none, but RECEIVER_TOKEN or RECEIVER_OIDC_ISSUER is set: choose one")
            log.warning("the receiver is open: RECEIVER_AUTH=none, any sender that reaches it may post events")
            return cls()
        if not configured:
            raise SettingsError(
                "the receiver (POST /) checks no sender: set RECEIVER_OIDC_ISSUER (Knative's OIDC sender "
                "tokens) or RECEIVER_TOKEN, or open it to anyone who reaches it with RECEIVER_AUTH=none"
            )
        oidc = None
        if settings.oidc_issuer:
            if not settings.oidc_audience:
                raise SettingsError(
                    "RECEIVER_OIDC_ISSUER needs RECEIVER_OIDC_AUDIENCE: the audience its tokens are for"
                )
            if not settings.oidc_allowed_subjects:
                raise SettingsError(
                    "RECEIVER_OIDC_ISSUER needs RECEIVER_OIDC_ALLOWED_SUBJECTS: the senders that may post, "
                    "e.g. system:serviceaccount:<namespace>: for every service account of one namespace"
                )
            keys = JwksClient(
                settings.oidc_issuer,
                settings.oidc_jwks_url,
                settings.oidc_ca_bundle,
                settings.oidc_fetch_token_file,
            )
            oidc = OidcVerifier(
                settings.oidc_issuer, settings.oidc_audience, keys, SubjectRule(settings.oidc_allowed_subjects)
            )
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


def _canonical(part: str) -> bool:
    """Whether ``part`` is base64url without padding as RFC 7515 writes it: the one encoding of its bytes."""
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode() == part


def _is_seconds(value: object) -> bool:
    """A finite JSON number (not a boolean, not a string, not NaN or Infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

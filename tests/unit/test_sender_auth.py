"""Sender authentication on POST /: RS256 JWTs signed by openssl, checked against a JWKS on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.config import ReceiverSettings, Secret, SettingsError
from consumer.errors import SenderKeysUnavailableError, UnauthorizedError
from http_shim import rs256
from http_shim.sender_auth import JwksClient, OidcVerifier, SenderAuth
from tests.support.oidc import Issuer, RsaKey, b64url
from tests.support.processes import free_port

AUDIENCE = "serving.knative.dev/service/diarization/diarization-events"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    running = Issuer(tmp_path_factory.mktemp("issuer"))
    yield running
    running.close()


@pytest.fixture
def auth(issuer: Issuer) -> SenderAuth:
    """As configured in a cluster: the issuer only; the JWKS comes from its discovery document."""
    return SenderAuth.from_settings(ReceiverSettings(oidc_issuer=issuer.url, oidc_audience=AUDIENCE))


def bearer(token: str) -> str:
    return f"Bearer {token}"


def refused(auth: SenderAuth, header: str) -> str:
    with pytest.raises(UnauthorizedError) as caught:
        auth.check(header)
    return caught.value.message


def test_a_token_for_this_audience_from_the_issuer_passes(auth: SenderAuth, issuer: Issuer) -> None:
    auth.check(bearer(issuer.token(AUDIENCE)))
    auth.check(bearer(issuer.token(["another-audience", AUDIENCE])))  # aud may be a list


def test_wrong_audience_issuer_or_time_are_refused(auth: SenderAuth, issuer: Issuer) -> None:
    assert "audience" in refused(auth, bearer(issuer.token("serving.knative.dev/service/diarization/diarization")))
    assert "issuer" in refused(auth, bearer(issuer.token(AUDIENCE, issuer="https://kubernetes.default.svc")))
    assert "expired" in refused(auth, bearer(issuer.token(AUDIENCE, expires_in=-120)))
    assert "not valid yet" in refused(auth, bearer(issuer.token(AUDIENCE, not_before=time.time() + 300)))
    assert "expired" in refused(auth, bearer(issuer.token(AUDIENCE, claims={"exp": None})))
    # small clock skew is tolerated both ways
    auth.check(bearer(issuer.token(AUDIENCE, expires_in=-10, not_before=time.time() + 10)))


def test_a_bad_signature_is_refused(auth: SenderAuth, issuer: Issuer) -> None:
    head, payload, signature = issuer.token(AUDIENCE).split(".")
    other = json.loads(rs256.b64url_decode(payload)) | {"sub": "system:serviceaccount:other:admin"}
    assert "signature" in refused(auth, bearer(f"{head}.{b64url(json.dumps(other).encode())}.{signature}"))
    flipped = bytearray(rs256.b64url_decode(signature))
    flipped[-1] ^= 1
    assert "signature" in refused(auth, bearer(f"{head}.{payload}.{b64url(bytes(flipped))}"))
    assert "signature" in refused(auth, bearer(f"{head}.{payload}.{b64url(bytes(flipped[:-1]))}"))


def test_a_token_signed_by_another_key_with_the_issuers_kid_is_refused(
    auth: SenderAuth, issuer: Issuer, tmp_path: Path
) -> None:
    impostor = RsaKey(tmp_path, issuer.key.kid)
    assert "signature" in refused(auth, bearer(issuer.token(AUDIENCE, key=impostor)))


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_only_rs256_is_accepted(auth: SenderAuth, issuer: Issuer, alg: str) -> None:
    assert "only RS256" in refused(auth, bearer(issuer.unsigned(AUDIENCE, alg)))


def test_other_algorithms_in_the_header_are_refused(auth: SenderAuth, issuer: Issuer) -> None:
    for alg in ("RS384", "PS256", "ES256", "rs256", None):
        assert "only RS256" in refused(auth, bearer(issuer.token(AUDIENCE, header={"alg": alg})))


def test_an_unknown_kid_refetches_the_keys_once(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path, kid="old")
    try:
        verifier = SenderAuth.from_settings(ReceiverSettings(oidc_issuer=issuer.url, oidc_audience=AUDIENCE))
        verifier.check(bearer(issuer.token(AUDIENCE)))
        assert issuer.fetches == 1
        assert "kid" in refused(verifier, bearer(issuer.token(AUDIENCE, header={"kid": "never-published"})))
        assert issuer.fetches == 1  # refetched at most every REFRESH_INTERVAL_SECONDS: no fetch storm
        # the issuer rotates its keys: the next token's kid is unknown, the keys are refetched
        client = JwksClient(issuer.url, clock=iter([0.0, 0.0, 0.0, 100.0, 100.0]).__next__)
        fresh = OidcVerifier(issuer.url, AUDIENCE, client)
        fresh.verify(issuer.token(AUDIENCE))
        rotated = RsaKey(tmp_path, "new")
        issuer.published.append(rotated.jwk())
        fetches = issuer.fetches
        fresh.verify(issuer.token(AUDIENCE, key=rotated))
        assert issuer.fetches == fetches + 1
    finally:
        issuer.close()


def test_weak_and_malformed_keys_are_not_used(tmp_path: Path) -> None:
    weak = RsaKey(tmp_path, "weak", bits=1024)
    with pytest.raises(rs256.InvalidKeyError, match="2048"):
        rs256.RsaPublicKey.from_jwk(weak.jwk())
    issuer = Issuer(tmp_path, kid="strong")
    try:
        issuer.published.append(weak.jwk())
        verifier = SenderAuth.from_settings(ReceiverSettings(oidc_issuer=issuer.url, oidc_audience=AUDIENCE))
        verifier.check(bearer(issuer.token(AUDIENCE)))
        assert "kid" in refused(verifier, bearer(issuer.token(AUDIENCE, key=weak)))
    finally:
        issuer.close()


def test_rs256_verifies_openssl_signatures_of_several_sizes(tmp_path: Path) -> None:
    for bits in (2048, 3072, 4096):
        key = RsaKey(tmp_path, f"k{bits}", bits=bits)
        public = rs256.RsaPublicKey.from_jwk(key.jwk())
        signature = key.sign(b"message")
        assert rs256.verify(public, b"message", signature)
        assert not rs256.verify(public, b"messagf", signature)
        assert not rs256.verify(public, b"message", signature + b"\x00")
        assert not rs256.verify(public, b"message", (public.n + 1).to_bytes(len(signature) + 1, "big")[1:])


def test_the_expected_encoding_is_what_openssl_recovers(tmp_path: Path) -> None:
    """Cross-check of the EMSA-PKCS1-v1_5 block against openssl's raw RSA public operation."""
    key = RsaKey(tmp_path, "raw")
    signature = key.sign(b"payload")
    public = rs256.RsaPublicKey.from_jwk(key.jwk())
    size = (public.bits + 7) // 8
    recovered = pow(int.from_bytes(signature, "big"), public.e, public.n).to_bytes(size, "big")
    assert recovered == rs256.expected_encoding(b"payload", size)


def test_no_header_or_another_scheme_is_refused(auth: SenderAuth, issuer: Issuer) -> None:
    for header in ("", "Bearer", "Bearer  ", f"Basic {issuer.token(AUDIENCE)}", "Bearer not.a-jwt", "Bearer a.b.c"):
        refused(auth, header)


def test_shared_token_alone_and_with_oidc(issuer: Issuer) -> None:
    shared = SenderAuth.from_settings(ReceiverSettings(token=Secret("s3cret-token")))
    shared.check("Bearer s3cret-token")
    refused(shared, "Bearer wrong")
    refused(shared, bearer(issuer.token(AUDIENCE)))  # OIDC is not configured here
    both = SenderAuth.from_settings(
        ReceiverSettings(token=Secret("s3cret-token"), oidc_issuer=issuer.url, oidc_audience=AUDIENCE)
    )
    both.check("Bearer s3cret-token")
    both.check(bearer(issuer.token(AUDIENCE)))
    refused(both, "Bearer wrong")


def test_nothing_configured_means_open() -> None:
    open_door = SenderAuth.from_settings(ReceiverSettings())
    assert not open_door.required
    open_door.check("")


def test_unreachable_keys_are_a_retryable_error_not_a_refusal(issuer: Issuer) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    auth = SenderAuth.from_settings(
        ReceiverSettings(oidc_issuer=issuer.url, oidc_audience=AUDIENCE, oidc_jwks_url=f"{nowhere}/keys")
    )
    with pytest.raises(SenderKeysUnavailableError) as caught:
        auth.check(bearer(issuer.token(AUDIENCE)))
    assert caught.value.retryable and caught.value.http_status == 503


def test_an_issuer_without_an_audience_is_a_settings_error(issuer: Issuer) -> None:
    with pytest.raises(SettingsError, match="RECEIVER_OIDC_AUDIENCE"):
        SenderAuth.from_settings(ReceiverSettings(oidc_issuer=issuer.url))

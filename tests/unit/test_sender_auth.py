"""Sender authentication on POST /: RS256 JWTs signed by openssl, checked against a JWKS on loopback."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.config import ReceiverSettings, Secret, SettingsError
from consumer.errors import SenderKeysUnavailableError, UnauthorizedError
from http_shim.sender_auth import JwksClient, OidcVerifier, SenderAuth, SubjectRule, rsa_key
from tests.support.credentials import SENDER_NAMESPACE
from tests.support.oidc import Issuer, RsaKey, b64url
from tests.support.processes import free_port

AUDIENCE = "serving.knative.dev/service/diarization/diarization-events"


def oidc(issuer: Issuer, **more: object) -> ReceiverSettings:
    """As configured in a cluster: the issuer, the audience, the senders of the namespace."""
    fields: dict[str, object] = {
        "oidc_issuer": issuer.url,
        "oidc_audience": AUDIENCE,
        "oidc_allowed_subjects": frozenset({SENDER_NAMESPACE}),
        **more,
    }
    return ReceiverSettings(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    running = Issuer(tmp_path_factory.mktemp("issuer"))
    yield running
    running.close()


@pytest.fixture
def auth(issuer: Issuer) -> SenderAuth:
    """The JWKS comes from the issuer's discovery document."""
    return SenderAuth.from_settings(oidc(issuer))


def bearer(token: str) -> str:
    return f"Bearer {token}"


def refused(auth: SenderAuth, header: str) -> str:
    with pytest.raises(UnauthorizedError) as caught:
        auth.check(header)
    return caught.value.message


def signed(issuer: Issuer, payload: dict, key: RsaKey | None = None) -> str:
    """A token over ``payload`` exactly as given (``json.dumps`` writes NaN and Infinity as they are)."""
    key = key or issuer.key
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": key.kid}).encode())
    signing_input = f"{head}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def test_a_token_for_this_audience_from_the_issuer_passes(auth: SenderAuth, issuer: Issuer) -> None:
    auth.check(bearer(issuer.token(AUDIENCE)))
    auth.check(bearer(issuer.token(["another-audience", AUDIENCE])))  # aud may be a list


def test_senders_of_other_namespaces_are_refused(auth: SenderAuth, issuer: Issuer) -> None:
    # any workload that can create a pod can get a token of its namespace's service account
    other = issuer.token(AUDIENCE, claims={"sub": "system:serviceaccount:some-other-tenant:default"})
    assert "may not post" in refused(auth, bearer(other))
    prefix_trick = issuer.token(AUDIENCE, claims={"sub": "system:serviceaccount:diarization-evil:default"})
    assert "may not post" in refused(auth, bearer(prefix_trick))
    assert "no sub" in refused(auth, bearer(issuer.token(AUDIENCE, claims={"sub": None})))


def test_allowed_subjects_are_exact_names_or_prefixes_ending_in_a_colon() -> None:
    rule = SubjectRule(frozenset({"system:serviceaccount:knative-eventing:kafka-broker", "system:serviceaccount:a:"}))
    assert rule.allows("system:serviceaccount:knative-eventing:kafka-broker")
    assert not rule.allows("system:serviceaccount:knative-eventing:kafka-broker-2")
    assert rule.allows("system:serviceaccount:a:anyone")
    assert not rule.allows("system:serviceaccount:ab:anyone") and not rule.allows("system:serviceaccount:a")


def test_wrong_audience_issuer_or_time_are_refused(auth: SenderAuth, issuer: Issuer) -> None:
    assert "audience" in refused(auth, bearer(issuer.token("serving.knative.dev/service/diarization/diarization")))
    assert "issuer" in refused(auth, bearer(issuer.token(AUDIENCE, issuer="https://kubernetes.default.svc")))
    assert "expired" in refused(auth, bearer(issuer.token(AUDIENCE, expires_in=-120)))
    assert "not valid yet" in refused(auth, bearer(issuer.token(AUDIENCE, not_before=time.time() + 300)))
    assert "no exp" in refused(auth, bearer(issuer.token(AUDIENCE, claims={"exp": None})))
    # small clock skew is tolerated both ways
    auth.check(bearer(issuer.token(AUDIENCE, expires_in=-10, not_before=time.time() + 10)))


@pytest.mark.parametrize("exp", [float("nan"), float("inf"), "4102444800", True, [4102444800]])
def test_exp_must_be_a_finite_number(auth: SenderAuth, issuer: Issuer, exp: object) -> None:
    payload = {"iss": issuer.url, "aud": AUDIENCE, "sub": SENDER_NAMESPACE + "x", "exp": exp}
    refused(auth, bearer(signed(issuer, payload)))


def test_a_bad_signature_is_refused(auth: SenderAuth, issuer: Issuer) -> None:
    head, payload, signature = issuer.token(AUDIENCE).split(".")
    other = {"iss": issuer.url, "aud": AUDIENCE, "sub": "system:serviceaccount:diarization:admin", "exp": 4102444800}
    assert "signature" in refused(auth, bearer(f"{head}.{b64url(json.dumps(other).encode())}.{signature}"))
    flipped = bytearray(signature.encode())
    flipped[10] = ord("A") if flipped[10] != ord("A") else ord("B")
    assert "signature" in refused(auth, bearer(f"{head}.{payload}.{flipped.decode()}"))
    short = b64url(base64.urlsafe_b64decode(signature + "==")[:-1])  # one byte short, canonically encoded
    assert "signature" in refused(auth, bearer(f"{head}.{payload}.{short}"))


def test_only_the_canonical_base64url_compact_form_is_read(auth: SenderAuth, issuer: Issuer) -> None:
    token = issuer.token(AUDIENCE)
    auth.check(bearer(token))
    head, payload, signature = token.split(".")
    # base64 with the other alphabet, padding, characters outside the alphabet, non-zero spare
    # bits: a lenient decoder would read each as the same bytes
    variants = [
        f"{head}.{payload}.{signature.replace('-', '+').replace('_', '/')}",
        f"{head}.{payload}==.{signature}",
        f"{head}.{payload[:8]}!{payload[8:]}.{signature}",
        f"{head}.{payload}.{signature}.",
        f"{head[:-1]}{chr(ord(head[-1]) + 1)}.{payload}.{signature}" if len(head) % 4 else f"{head}..{signature}",
    ]
    for variant in variants:
        assert variant != token
        assert "compact form" in refused(auth, bearer(variant)), variant


def test_a_token_signed_by_another_key_with_the_issuers_kid_is_refused(
    auth: SenderAuth, issuer: Issuer, tmp_path: Path
) -> None:
    impostor = RsaKey(tmp_path, issuer.key.kid)
    assert "signature" in refused(auth, bearer(issuer.token(AUDIENCE, key=impostor)))


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_only_rs256_is_accepted(auth: SenderAuth, issuer: Issuer, alg: str) -> None:
    token = issuer.unsigned(AUDIENCE, alg)
    if alg == "none":  # no signature part at all: not even a compact JWS
        refused(auth, bearer(token))
    else:
        assert "only RS256" in refused(auth, bearer(token))


def test_other_algorithms_in_the_header_are_refused(auth: SenderAuth, issuer: Issuer) -> None:
    for alg in ("RS384", "PS256", "ES256", "rs256", None):
        assert "only RS256" in refused(auth, bearer(issuer.token(AUDIENCE, header={"alg": alg})))


def test_an_unknown_kid_refetches_the_keys_at_most_every_interval(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path, kid="old")
    try:
        verifier = SenderAuth.from_settings(oidc(issuer))
        verifier.check(bearer(issuer.token(AUDIENCE)))
        assert issuer.fetches == 1
        for _ in range(20):
            assert "kid" in refused(verifier, bearer(issuer.token(AUDIENCE, header={"kid": "never-published"})))
        assert issuer.fetches == 1  # fetched moments ago: no refetch within REFRESH_INTERVAL_SECONDS, no storm
        # the issuer rotates its keys: the next token's kid is unknown, the keys are refetched
        now = [0.0]
        client = JwksClient(issuer.url, clock=lambda: now[0])
        fresh = OidcVerifier(issuer.url, AUDIENCE, client, SubjectRule(frozenset({SENDER_NAMESPACE})))
        fresh.verify(issuer.token(AUDIENCE))
        rotated = RsaKey(tmp_path, "new")
        issuer.published.append(rotated.jwk())
        fetches = issuer.fetches
        now[0] = 100.0
        fresh.verify(issuer.token(AUDIENCE, key=rotated))
        assert issuer.fetches == fetches + 1
    finally:
        issuer.close()


def test_an_issuer_outage_is_not_hammered_and_a_rotated_key_meanwhile_is_retryable(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path, kid="old")
    try:
        now = [0.0]
        client = JwksClient(issuer.url, clock=lambda: now[0])
        verifier = OidcVerifier(issuer.url, AUDIENCE, client, SubjectRule(frozenset({SENDER_NAMESPACE})))
        verifier.verify(issuer.token(AUDIENCE))
        rotated = RsaKey(tmp_path, "new")
        issuer.up = False
        fetches = issuer.fetches
        for step in range(30):  # 30 requests over 15 s while the issuer fails
            now[0] = 20.0 + step / 2
            with pytest.raises(SenderKeysUnavailableError) as caught:
                verifier.verify(issuer.token(AUDIENCE, key=rotated))
            assert caught.value.retryable and caught.value.http_status == 503  # Knative retries 503, not 401
            verifier.verify(issuer.token(AUDIENCE))  # known keys keep working
        assert issuer.fetches - fetches <= 2, "at most one fetch per REFRESH_INTERVAL_SECONDS while it fails"
        issuer.up = True
        issuer.published.append(rotated.jwk())
        now[0] = 60.0
        verifier.verify(issuer.token(AUDIENCE, key=rotated))
    finally:
        issuer.close()


def test_a_request_with_a_known_key_does_not_wait_for_a_slow_refetch(tmp_path: Path) -> None:
    issuer = Issuer(tmp_path, kid="k")
    try:
        auth = SenderAuth.from_settings(oidc(issuer))
        auth.check(bearer(issuer.token(AUDIENCE)))
        issuer.delay = 3.0
        unknown = bearer(issuer.token(AUDIENCE, header={"kid": "unknown"}))
        refetching = threading.Thread(target=lambda: pytest.raises(UnauthorizedError, auth.check, unknown))
        refetching.start()
        time.sleep(0.5)  # the refetch is in flight now
        started = time.monotonic()
        auth.check(bearer(issuer.token(AUDIENCE)))
        waited = time.monotonic() - started
        refetching.join()
        assert waited < 2.0, f"a request with a known key waited {waited:.1f} s for another's refetch"
    finally:
        issuer.close()


def test_weak_and_malformed_keys_are_not_used(tmp_path: Path) -> None:
    weak = RsaKey(tmp_path, "weak", bits=1024)
    with pytest.raises(ValueError, match="2048"):
        rsa_key(weak.jwk())
    with pytest.raises(ValueError, match="RSA"):
        rsa_key({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})
    issuer = Issuer(tmp_path, kid="strong")
    try:
        issuer.published.append(weak.jwk())
        verifier = SenderAuth.from_settings(oidc(issuer))
        verifier.check(bearer(issuer.token(AUDIENCE)))
        assert "kid" in refused(verifier, bearer(issuer.token(AUDIENCE, key=weak)))
    finally:
        issuer.close()


def test_no_header_or_another_scheme_is_refused(auth: SenderAuth, issuer: Issuer) -> None:
    for header in ("", "Bearer", "Bearer  ", f"Basic {issuer.token(AUDIENCE)}", "Bearer not.a-jwt", "Bearer a.b.c"):
        refused(auth, header)


def test_shared_token_alone_and_with_oidc(issuer: Issuer) -> None:
    shared = SenderAuth.from_settings(ReceiverSettings(token=Secret("s3cret-token")))
    shared.check("Bearer s3cret-token")
    refused(shared, "Bearer wrong")
    refused(shared, bearer(issuer.token(AUDIENCE)))  # OIDC is not configured here
    both = SenderAuth.from_settings(oidc(issuer, token=Secret("s3cret-token")))
    both.check("Bearer s3cret-token")
    both.check(bearer(issuer.token(AUDIENCE)))
    refused(both, "Bearer wrong")


def test_a_receiver_checks_its_senders_unless_opened_on_purpose(issuer: Issuer) -> None:
    with pytest.raises(SettingsError, match="RECEIVER_AUTH=none"):
        SenderAuth.from_settings(ReceiverSettings())
    opened = SenderAuth.from_settings(ReceiverSettings(auth="none"))
    assert not opened.required
    opened.check("")
    with pytest.raises(SettingsError, match="choose one"):
        SenderAuth.from_settings(ReceiverSettings(auth="none", token=Secret("t")))


def test_unreachable_keys_are_a_retryable_error_not_a_refusal(issuer: Issuer, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    auth = SenderAuth.from_settings(oidc(issuer, oidc_jwks_url=f"{nowhere}/keys"))
    with pytest.raises(SenderKeysUnavailableError) as caught:
        auth.check(bearer(issuer.token(AUDIENCE)))
    assert caught.value.retryable and caught.value.http_status == 503
    # the pod's token for fetching the keys is missing: the same, not a crash (500)
    missing = SenderAuth.from_settings(oidc(issuer, oidc_fetch_token_file=str(tmp_path / "no-such-token")))
    with pytest.raises(SenderKeysUnavailableError, match="no-such-token"):
        missing.check(bearer(issuer.token(AUDIENCE)))


def test_incomplete_oidc_settings_are_settings_errors(issuer: Issuer) -> None:
    with pytest.raises(SettingsError, match="RECEIVER_OIDC_AUDIENCE"):
        SenderAuth.from_settings(ReceiverSettings(oidc_issuer=issuer.url))
    with pytest.raises(SettingsError, match="RECEIVER_OIDC_ALLOWED_SUBJECTS"):
        SenderAuth.from_settings(ReceiverSettings(oidc_issuer=issuer.url, oidc_audience=AUDIENCE))

"""RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 section 8.2.2) with the standard library.

Only verification, only this one algorithm: the receiver checks Knative's OIDC sender
tokens, which Kubernetes signs with RS256. The signature is checked by building the whole
expected encoded message (EMSA-PKCS1-v1_5, RFC 8017 section 9.2) and comparing it with the
recovered one; the recovered block is never parsed, so the padding and DigestInfo forgeries
that parsing verifiers fall for (Bleichenbacher 2006 and its variants) do not apply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

MIN_KEY_BITS = 2048
# DER of DigestInfo{sha256, NULL} up to the digest (RFC 8017 section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class InvalidKeyError(ValueError):
    """A JWK that is no usable RS256 verification key."""


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    """An RSA public key: modulus ``n`` and public exponent ``e``."""

    n: int
    e: int

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @classmethod
    def from_jwk(cls, jwk: dict[str, object]) -> RsaPublicKey:
        """The key of an RSA JWK (RFC 7518 section 6.3.1); ``InvalidKeyError`` if it is not one of at least 2048 bits."""
        if jwk.get("kty") != "RSA":
            raise InvalidKeyError(f"not an RSA key (kty {jwk.get('kty')!r})")
        n, e = jwk.get("n"), jwk.get("e")
        if not isinstance(n, str) or not isinstance(e, str):
            raise InvalidKeyError("an RSA JWK needs n and e")
        key = cls(int.from_bytes(b64url_decode(n), "big"), int.from_bytes(b64url_decode(e), "big"))
        if key.bits < MIN_KEY_BITS:
            raise InvalidKeyError(f"RSA keys must have at least {MIN_KEY_BITS} bits, this one has {key.bits}")
        if key.e < 3 or key.e % 2 == 0:
            raise InvalidKeyError("the RSA public exponent is not valid")
        return key


def b64url_decode(text: str) -> bytes:
    """Base64url without padding (RFC 7515 section 2); ``ValueError`` on anything else."""
    if not text.isascii() or "=" in text:
        raise ValueError("not base64url without padding")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def verify(key: RsaPublicKey, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s RS256 signature of ``message``."""
    size = (key.bits + 7) // 8
    if key.bits < MIN_KEY_BITS or len(signature) != size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    recovered = pow(s, key.e, key.n).to_bytes(size, "big")
    return hmac.compare_digest(recovered, expected_encoding(message, size))


def expected_encoding(message: bytes, size: int) -> bytes:
    """EMSA-PKCS1-v1_5 of ``message`` with SHA-256 for a ``size``-byte modulus."""
    digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    padding = size - len(digest_info) - 3
    return b"\x00\x01" + b"\xff" * padding + b"\x00" + digest_info

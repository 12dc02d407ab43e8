"""A token issuer for tests: RSA keys made by the ``openssl`` tool, a JWKS and discovery document
served on loopback, and JWTs signed by ``openssl dgst -sha256 -sign`` (RS256), as Kubernetes
issues Knative's OIDC sender tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    tool = shutil.which("openssl")
    assert tool, "the openssl command-line tool is needed to make test keys and tokens"
    return subprocess.run([tool, *args], input=data, capture_output=True, check=True).stdout


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class RsaKey:
    """An RSA key pair in a PEM file, made by openssl."""

    def __init__(self, folder: Path, kid: str, bits: int = 2048) -> None:
        self.kid = kid
        self.pem = folder / f"{kid}.pem"
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", str(self.pem))
        text = _openssl("rsa", "-in", str(self.pem), "-noout", "-text").decode()
        modulus = _openssl("rsa", "-in", str(self.pem), "-noout", "-modulus").decode().strip().split("=", 1)[1]
        exponent = int(re.search(r"publicExponent: (\d+)", text).group(1))  # type: ignore[union-attr]
        self.n = int(modulus, 16)
        self.e = exponent

    def jwk(self) -> dict[str, str]:
        size = (self.n.bit_length() + 7) // 8
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": b64url(self.n.to_bytes(size, "big")),
            "e": b64url(self.e.to_bytes((self.e.bit_length() + 7) // 8, "big")),
        }

    def sign(self, message: bytes) -> bytes:
        """RS256 signature by openssl."""
        return _openssl("dgst", "-sha256", "-sign", str(self.pem), data=message)


class Issuer:
    """An OIDC issuer on loopback: ``/.well-known/openid-configuration`` and ``/keys``."""

    def __init__(self, folder: Path, kid: str = "k1") -> None:
        self.folder = folder
        self.key = RsaKey(folder, kid)
        self.published: list[dict[str, str]] = [self.key.jwk()]
        self.fetches = 0
        self.up = True
        self.delay = 0.0  # seconds each answer of /keys waits: a slow issuer
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not issuer.up:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/keys"}
                elif self.path == "/keys":
                    issuer.fetches += 1
                    time.sleep(issuer.delay)
                    body = {"keys": issuer.published}
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def token(
        self,
        audience: str | list[str],
        *,
        issuer: str | None = None,
        expires_in: float = 600,
        not_before: float | None = None,
        key: RsaKey | None = None,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A signed RS256 JWT, as Kubernetes issues one to a service account."""
        key = key or self.key
        now = time.time()
        payload: dict[str, Any] = {
            "iss": issuer or self.url,
            "aud": audience,
            "sub": "system:serviceaccount:diarization:kafkasource-diarization-audio-uploads",
            "iat": int(now),
            "exp": int(now + expires_in),
        }
        if not_before is not None:
            payload["nbf"] = int(not_before)
        payload.update(claims or {})
        head = {"alg": "RS256", "typ": "JWT", "kid": key.kid, **(header or {})}
        signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(payload).encode())}"
        return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"

    def unsigned(self, audience: str, alg: str = "none") -> str:
        """An ``alg: none`` token (empty signature) or, for ``HS256``, one MACed with the public JWK."""
        head = {"alg": alg, "typ": "JWT", "kid": self.key.kid}
        payload = {"iss": self.url, "aud": audience, "sub": "forger", "exp": int(time.time() + 600)}
        signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(payload).encode())}"
        if alg == "none":
            return f"{signing_input}."
        secret = json.dumps(self.key.jwk()).encode()
        return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

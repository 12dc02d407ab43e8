"""The security headers every browser page of the shim sends (the results page, ``/docs``)."""

from __future__ import annotations

from flask import Response


def with_page_headers(response: Response, content_security_policy: str) -> Response:
    """``response`` with the page's policy, no content sniffing and no referrer."""
    response.headers["Content-Security-Policy"] = content_security_policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response

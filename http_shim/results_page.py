"""The results page: submit a file, see who spoke when on a timeline, listen, read, download.

Static files only (``results_page_assets/``: plain ES modules, no build step, nothing from
another host), served at ``/ui/``; the page calls the shim's own API with relative URLs, so
it works at any path the Route or a proxy puts it under. ``GET /`` leads to it (``POST /``
stays the Knative receiver where that is enabled). The page itself needs no API key: it
asks for one when the API answers 401 and keeps it in the browser tab's session storage.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, redirect, send_from_directory
from werkzeug.wrappers import Response as BaseResponse

from http_shim.page_headers import with_page_headers
from http_shim.state import state

ASSETS = Path(__file__).with_name("results_page_assets")

# Everything from this origin, nothing inline: a page that shows uploaded names and
# transcripts cannot be made to run their text. Media may also come from an object URL
# (the chosen file, played without uploading it again) or a job's audio link.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: https: http:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

# The job door's collection, when the shim serves one (the page then submits jobs).
JOBS_RULE = "/v1/jobs"

blueprint = Blueprint("results_page", __name__)


@blueprint.get("/")
def root() -> BaseResponse:
    """The page. A relative Location, so that a path prefix in front of the shim is kept."""
    return redirect("ui/", code=302)


@blueprint.get("/ui")
def without_slash() -> BaseResponse:
    """``/ui`` -> ``/ui/``, relatively (Flask's own slash redirect would name the host and the full path)."""
    return redirect("ui/", code=302)


@blueprint.get("/ui/")
def index() -> Response:
    """The page's HTML."""
    return send_from_directory(ASSETS, "index.html")


@blueprint.get("/ui/capabilities.json")
def capabilities() -> Response:
    """What this shim offers the page: the job door, and the largest upload it takes.

    Read from the app's routes rather than probed by the page, whose probe of a missing
    ``/v1/jobs`` would be a 404 in every visitor's console.
    """
    jobs = any(rule.rule == JOBS_RULE for rule in current_app.url_map.iter_rules())
    return jsonify(jobs=jobs, max_audio_bytes=state().settings.audio.max_bytes)


@blueprint.get("/ui/<path:name>")
def asset(name: str) -> Response:
    """One of the page's files; 404 for anything else (``send_from_directory`` stays inside ``ASSETS``)."""
    return send_from_directory(ASSETS, name)


@blueprint.after_request
def page_headers(response: Response) -> Response:
    """The page's security headers; its files are revalidated (ETag), so a new release shows at once."""
    response.headers["Cache-Control"] = "no-cache"
    return with_page_headers(response, CONTENT_SECURITY_POLICY)

"""Every error leaves the app as ``{"error": {"code", "message"}}`` with its status."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import ClientDisconnected, HTTPException

from consumer.errors import InternalError, ServiceError

log = logging.getLogger(__name__)

# Werkzeug's own errors (routing, body size) get codes in the service's vocabulary.
HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str) -> Response:
    """A JSON error response."""
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        if exc.detail_is_internal:
            log.warning("answered with an error", extra={"error_code": exc.code, "error": exc.message})
        return error_response(exc.http_status, exc.code, exc.public_message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        return error_response(status, HTTP_CODES.get(status, "http_error"), exc.description or exc.name)

    @app.errorhandler(ClientDisconnected)
    def _body_cut_off(exc: ClientDisconnected) -> Response:
        # werkzeug reports any failed body read this way; the socket read timeout set in
        # http_shim.observability shows as a TimeoutError behind it
        if isinstance(exc.__context__, TimeoutError):
            return error_response(408, "request_timeout", "the request body arrived too slowly")
        return error_response(400, "incomplete_body", "the request body ended before its declared length")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, InternalError.code, InternalError.public_text)

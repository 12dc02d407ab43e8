"""The synchronous API, compatible with the previous server: ``/v1/diarize`` and ``/v1/vad``."""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.datastructures import FileStorage, MultiDict

from consumer.analyzer import Analyzer
from consumer.errors import (
    InvalidRequestError,
    MissingFileError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from consumer.formats import diarization_json, rttm_uri, to_rttm, vad_json
from consumer.options import OPTION_NAMES, JobOptions, Task, parse_options
from http_shim.state import state

blueprint = Blueprint("api", __name__, url_prefix="/v1")

RTTM_MIMETYPE = "text/rttm"


def _analyzer() -> Analyzer:
    return state().analyzer


@blueprint.before_request
def _authenticate() -> None:
    """Require ``Authorization: Bearer <API_KEY>`` when an API key is configured."""
    key = state().settings.http.api_key.value
    if key:
        require_bearer(request.headers.get("Authorization", ""), key)


def require_bearer(header: str, key: str) -> None:
    """Raise ``UnauthorizedError`` unless ``header`` is ``Bearer <key>``; constant-time."""
    scheme, _, provided = header.partition(" ")
    # Digests have equal lengths, so the comparison time does not depend on the key's length either.
    same = hmac.compare_digest(
        hashlib.sha256(provided.strip().encode()).digest(), hashlib.sha256(key.encode()).digest()
    )
    if scheme.lower() != "bearer" or not same:
        raise UnauthorizedError("missing or wrong API key (Authorization: Bearer <key>)")


@blueprint.post("/diarize")
def diarize() -> Response:
    """Who spoke when: JSON segments, or RTTM with ``Accept: text/rttm`` / ``format=rttm``."""
    upload = _single_file()
    options = options_from_form(request.form, tasks=frozenset({Task.DIARIZATION, Task.VAD}))
    rttm = _wants_rttm()
    result = _analyzer().analyze(upload.stream, options, job_id=g.request_id)
    if rttm:
        return Response(to_rttm(result, rttm_uri(upload.filename or "audio")), mimetype=RTTM_MIMETYPE)
    return jsonify(diarization_json(result))


@blueprint.post("/vad")
def vad() -> Response:
    """Where there is speech: JSON speech segments. Of the options, only ``audio_stream`` applies."""
    upload = _single_file()
    options = parse_options({"audio_stream": request.form.get("audio_stream")}, tasks=frozenset({Task.VAD}))
    result = _analyzer().analyze(upload.stream, options, job_id=g.request_id)
    return jsonify(vad_json(result))


def _single_file() -> FileStorage:
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            f"send the audio as multipart/form-data with a 'file' field, not {request.mimetype or 'no content type'}"
        )
    files = request.files.getlist("file")
    if len(files) != 1:
        raise MissingFileError(f"expected exactly one 'file' field, got {len(files)}")
    return files[0]


def _wants_rttm() -> bool:
    fmt = (request.args.get("format") or request.form.get("format") or "").lower()
    if fmt:
        if fmt not in {"json", "rttm"}:
            raise InvalidRequestError(f"format must be json or rttm, got {fmt!r}")
        return fmt == "rttm"
    return request.accept_mimetypes.best_match(["application/json", RTTM_MIMETYPE]) == RTTM_MIMETYPE


def options_from_form(form: MultiDict[str, str], tasks: frozenset[Task]) -> JobOptions:
    """``JobOptions`` from the form fields (the endpoint fixes the tasks); 400 on bad values."""
    return parse_options({name: form.get(name) for name in OPTION_NAMES if name != "tasks"}, tasks=tasks)

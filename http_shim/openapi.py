"""The shim's OpenAPI 3.1 document, served at ``GET /openapi.json``, and Swagger UI at ``GET /docs``.

The document is built in code from what the doors read and answer: the option bounds of
``consumer.options``, the formats of ``http_shim.outputs``, the error codes and statuses of
``consumer.errors``, the event schemas of ``schemas/``, the limits of the running settings.
``POST /`` is in it only where the receiver is mounted; the bearer API key only where the
API has one. The browser pages (the results page, this one) are no API: ``PAGES`` names
their routes, so that every route of the app is either an operation here or a page.

Swagger UI's files come from the ``flask-swagger-ui`` package and are served by the shim
(no other host); its own HTML has an inline script, so the page here is a small HTML file
and an initializer served as a file, under a policy without ``unsafe-inline`` for scripts.
Both are public, like the results page: they describe the API and hold no secret.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, send_from_directory

from consumer import errors as e
from consumer.config import Settings
from consumer.engine.identity import MAX_ENROLMENT_SECONDS
from consumer.options import MAX_AUDIO_STREAM, MAX_SPEAKERS
from consumer.transcript import MAX_TRANSCRIPT_BYTES
from consumer.voiceprints import MAX_DOCUMENT_BYTES, MAX_VOICEPRINTS
from http_shim import outputs
from http_shim.page_headers import with_page_headers
from http_shim.state import state
from schemas import load as load_schema

SWAGGER_UI = Path(str(resources.files("flask_swagger_ui").joinpath("dist")))
INITIALIZER = "swagger-initializer.js"

# Browser pages and their files (rule, method): not API, so not operations of the document.
PAGES = frozenset(
    {
        ("/", "GET"),  # a redirect to the results page
        ("/ui", "GET"),
        ("/ui/", "GET"),
        ("/ui/<path:name>", "GET"),
        ("/docs", "GET"),
        ("/docs/<path:name>", "GET"),
    }
)

# Swagger UI's own files are served from here; its scripts set styles on elements, hence
# 'unsafe-inline' for styles only; its icons are data: URLs. No validator badge (which
# would call another host): validatorUrl is null in the initializer.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Speaker diarization service: API</title>
  <link rel="stylesheet" type="text/css" href="docs/swagger-ui.css">
  <link rel="stylesheet" type="text/css" href="docs/index.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/swagger-ui-standalone-preset.js"></script>
  <script src="docs/swagger-initializer.js"></script>
</body>
</html>
"""

# Relative URLs: the page works under any path prefix a Route or proxy puts in front.
_INITIALIZER_JS = """window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
});
"""

blueprint = Blueprint("openapi", __name__)


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    """The document for this shim as it runs (its receiver, its API key, its limits)."""
    current = state()
    return jsonify(document(current.settings, receiver=current.receiver is not None, jobs=current.jobs is not None))


@blueprint.get("/docs")
def docs() -> Response:
    """Swagger UI on the document."""
    return Response(_PAGE, mimetype="text/html")


@blueprint.get("/docs/<path:name>")
def docs_file(name: str) -> Response:
    """Swagger UI's files from the flask-swagger-ui package, and the page's initializer."""
    if name == INITIALIZER:
        return Response(_INITIALIZER_JS, mimetype="text/javascript")
    return send_from_directory(SWAGGER_UI, name)


@blueprint.after_request
def page_headers(response: Response) -> Response:
    """The page's security headers (the document gets them too: it is only data)."""
    return with_page_headers(response, CONTENT_SECURITY_POLICY)


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/ui/<path:name>`` -> ``/ui/{name}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


# --- the document ----------------------------------------------------------------------------

# Every request body may fail to arrive: cut off (400) or too slow (408, BODY_READ_TIMEOUT_SECONDS);
# these are rendered by http_shim.errors, with no error class of their own.
_INCOMPLETE_BODY = (400, "incomplete_body")
_SLOW_BODY = (408, "request_timeout")
_UNEXPECTED = (e.InternalError,)
_NOT_SERVING = (e.ModelNotReadyError, e.BusyError, e.EngineBrokenError, e.ModelLoadError)
_BAD_AUDIO = (
    e.NotAudioError,
    e.CorruptAudioError,
    e.AudioTooShortError,
    e.AudioTooLongError,
    e.UnsupportedSampleRateError,
    e.UnsupportedCodecError,
    e.NoAudioStreamError,
    e.NonFiniteAudioError,
    e.PayloadTooLargeError,
)
_UPLOAD = (e.InvalidRequestError, e.MissingFileError, e.UnsupportedMediaTypeError, *_BAD_AUDIO)
_JOB_OPTIONS = (
    e.InvalidSpeakerOptionsError,
    e.InvalidTranscriptError,
    e.TranscriptMismatchError,
    e.InvalidVoiceprintError,
    e.TooManyVoiceprintsError,
    e.VoiceprintModelMismatchError,
)
_ANALYSIS = (*_UPLOAD, *_NOT_SERVING, e.InferenceError, *_UNEXPECTED)
_ENROLMENT = (e.VoiceprintTooShortError, e.VoiceprintSpeakersError)
_STATUS_TEXT = {
    400: "The request is malformed",
    401: "Missing or wrong credentials",
    408: "The request body arrived too slowly",
    413: "The body is too large",
    415: "Not a media type the operation takes",
    422: "The input is well-formed but cannot be used",
    500: "The service failed (a bug, or the model failed on valid input)",
    503: "Not now: retry after Retry-After seconds",
}


def document(settings: Settings, *, receiver: bool, jobs: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a shim with ``settings``, with ``POST /`` where ``receiver``
    and ``/v1/jobs`` where ``jobs``."""
    keyed = settings.http.api_auth == "key"
    api_security: dict[str, Any] = {"security": [{"apiKey": []}]} if keyed else {}
    auth_errors: tuple[Any, ...] = (e.UnauthorizedError,) if keyed else ()
    max_mib = settings.audio.max_bytes / 2**20
    paths: dict[str, Any] = {
        "/v1/diarize": {
            "post": {
                "tags": ["sync API"],
                "operationId": "diarize",
                "summary": "Who spoke when",
                "description": "Speaker diarization of the uploaded audio (the previous server's shape). "
                "JSON, or RTTM with `Accept: text/rttm` or `format=rttm`; with a `transcript`, every "
                "word and segment gets its speaker, and `diarized_json`, `srt` and `vtt` carry it.",
                **api_security,
                "parameters": _format_parameters(),
                "requestBody": _multipart(_diarize_fields(), max_mib),
                "responses": {
                    "200": _formatted_result(_ref("Diarization")),
                    **_error_responses(*auth_errors, *_ANALYSIS, *_JOB_OPTIONS, _INCOMPLETE_BODY, _SLOW_BODY),
                },
            }
        },
        "/v1/vad": {
            "post": {
                "tags": ["sync API"],
                "operationId": "vad",
                "summary": "Where there is speech",
                "description": "Voice activity detection of the uploaded audio; of the options, only "
                "`audio_stream` applies.",
                **api_security,
                "requestBody": _multipart({"file": _FILE, "audio_stream": _audio_stream()}, max_mib),
                "responses": {
                    "200": _json_response("Speech regions", _ref("Speech")),
                    **_error_responses(*auth_errors, *_ANALYSIS, _INCOMPLETE_BODY, _SLOW_BODY),
                },
            }
        },
        "/v1/voiceprints": {
            "post": {
                "tags": ["sync API"],
                "operationId": "enrolVoiceprint",
                "summary": "A voiceprint of one speaker",
                "description": f"Enrols the one speaker of a clip (at most {MAX_ENROLMENT_SECONDS:.0f} s, at "
                "least 3 s of speech). The service keeps nothing: send the voiceprint back with jobs.",
                **api_security,
                "requestBody": _multipart({"file": _FILE, "audio_stream": _audio_stream()}, max_mib),
                "responses": {
                    "200": _json_response("The voiceprint document", _ref("Voiceprint")),
                    **_error_responses(*auth_errors, *_ANALYSIS, *_ENROLMENT, _INCOMPLETE_BODY, _SLOW_BODY),
                },
            }
        },
        "/v1/audio/diarization": {
            "post": {
                "tags": ["OpenAI-style API"],
                "operationId": "audioDiarization",
                "summary": "Who spoke when, shaped like OpenAI's /v1/audio/transcriptions",
                "description": "Known speakers as `known_speaker_names[]` with one `known_speaker_references[]` "
                "each: a voiceprint document, or an audio clip as a base64 `data:` URL, enrolled on the spot.",
                **api_security,
                "parameters": _format_parameters(),
                "requestBody": _multipart(_openai_fields(), max_mib),
                "responses": {
                    "200": _formatted_result(_ref("OpenAIDiarization")),
                    **_error_responses(
                        *auth_errors, *_ANALYSIS, *_JOB_OPTIONS, *_ENROLMENT, _INCOMPLETE_BODY, _SLOW_BODY
                    ),
                },
            }
        },
        "/health": {
            "get": {
                "tags": ["probes"],
                "operationId": "health",
                "summary": "Liveness",
                "description": "Always open. 503 when a job has outrun its deadline (the container should be "
                "restarted).",
                "responses": {
                    "200": _json_response("Alive", _ref("Health")),
                    "503": _json_response("A job is stuck", _ref("Health")),
                    **_error_responses(*_UNEXPECTED),
                },
            }
        },
        "/ready": {
            "get": {
                "tags": ["probes"],
                "operationId": "ready",
                "summary": "Readiness",
                "description": "Always open. 200 once the model is loaded and warm.",
                "responses": {
                    "200": _json_response("Ready", _ref("Readiness")),
                    "503": _json_response("Loading, or loading failed, or the engine broke", _ref("Readiness")),
                    **_error_responses(*_UNEXPECTED),
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["probes"],
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                **api_security,
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_error_responses(*auth_errors, *_UNEXPECTED),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "tags": ["documentation"],
                "operationId": "openapi",
                "summary": "This document",
                "description": "Public: it describes the API and holds no secret.",
                "responses": {
                    "200": _json_response("The OpenAPI document", {"type": "object", "required": ["openapi", "paths"]}),
                    **_error_responses(*_UNEXPECTED),
                },
            }
        },
        "/ui/capabilities.json": {
            "get": {
                "tags": ["results page"],
                "operationId": "pageCapabilities",
                "summary": "What this shim offers the results page",
                "description": "Public; read by the results page at `/ui/`.",
                "responses": {
                    "200": _json_response("The job door, and the largest upload", _ref("Capabilities")),
                    **_error_responses(*_UNEXPECTED),
                },
            }
        },
    }
    if receiver:
        paths["/"] = {"post": _receiver_operation(settings)}
    if jobs:
        paths.update(_job_operations(api_security, auth_errors, max_mib))
    security_schemes: dict[str, Any] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "The API key (`API_KEY`): `Authorization: Bearer <key>`.",
        }
    }
    if receiver:
        security_schemes["senderToken"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "A sender of events: the shared `RECEIVER_TOKEN`, or a Knative Eventing OIDC token "
            "(a JWT) of an allowed subject.",
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Speaker diarization service",
            "version": "1",
            "description": "Who spoke when, and where there is speech. Every error is "
            '`{"error": {"code", "message"}}` with a stable machine-readable `code`.',
        },
        "servers": [{"url": "."}],  # relative to this document: any path prefix in front of the shim is kept
        "paths": paths,
        "components": {"securitySchemes": security_schemes, "schemas": _schemas()},
    }


_FILE: dict[str, Any] = {
    "type": "string",
    "format": "binary",
    "contentMediaType": "application/octet-stream",
    "description": "The audio (or video) file: WAV, FLAC, MP3, Ogg, Opus, M4A/AAC, WebM, MP4...; "
    "the format is recognised by content.",
}
_FILE_CONTENT_TYPES = "audio/*, video/*, application/octet-stream"
_FLAG = {"type": "string", "enum": ["true", "false"], "description": "Also 1/0, yes/no, on/off, in any case."}


def _count(what: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": MAX_SPEAKERS, "description": what}


def _audio_stream() -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_AUDIO_STREAM,
        "default": 0,
        "description": "Which audio stream of the file, from 0.",
    }


def _text_or_file(description: str) -> dict[str, Any]:
    return {"description": description, "anyOf": [{"type": "string"}, {"type": "string", "format": "binary"}]}


def _speaker_fields() -> dict[str, Any]:
    return {
        "num_speakers": _count("The number of speakers, when known (not with min_speakers/max_speakers)."),
        "min_speakers": _count("At least this many speakers."),
        "max_speakers": _count("At most this many speakers (not fewer than min_speakers)."),
    }


def _common_fields() -> dict[str, Any]:
    return {
        "file": _FILE,
        **_speaker_fields(),
        "exclusive": {**_FLAG, "description": "Turns that never overlap (a transcript asks for them)."},
        "audio_stream": _audio_stream(),
        "return_embeddings": {**_FLAG, "description": "Add each speaker's embedding (centroid)."},
        "response_format": {"type": "string", "enum": list(outputs.FORMATS), "default": "json"},
        "transcript": _text_or_file(
            f"A transcript to attribute (OpenAI verbose_json, WhisperX JSON, SRT or WebVTT; UTF-8, up to "
            f"{MAX_TRANSCRIPT_BYTES // 2**20} MiB as a file part)."
        ),
    }


def _diarize_fields() -> dict[str, Any]:
    return {
        **_common_fields(),
        "format": {"type": "string", "enum": list(outputs.FORMATS), "description": "Same as response_format."},
        "voiceprints": _text_or_file(
            f"Known speakers: a JSON object name -> voiceprint (at most {MAX_VOICEPRINTS}, "
            f"{MAX_DOCUMENT_BYTES // 2**20} MiB)."
        ),
    }


def _openai_fields() -> dict[str, Any]:
    return {
        **_common_fields(),
        "model": {"type": "string", "description": "Accepted; the answer names the model this service runs."},
        "known_speaker_names[]": {
            "type": "array",
            "maxItems": MAX_VOICEPRINTS,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        "known_speaker_references[]": {
            "type": "array",
            "maxItems": MAX_VOICEPRINTS,
            "items": {"type": "string", "description": "A voiceprint document, or a data:...;base64, audio clip."},
        },
    }


def _multipart(fields: dict[str, Any], max_mib: float, required: tuple[str, ...] = ("file",)) -> dict[str, Any]:
    """A multipart body of ``fields`` that has one of ``required`` (exactly one ``file`` where it is one)."""
    schema: dict[str, Any] = {"type": "object", "properties": fields}
    if len(required) == 1:
        schema["required"] = list(required)
    else:
        schema["oneOf"] = [{"required": [name]} for name in required]
    return {
        "required": True,
        "description": f"multipart/form-data with exactly one `{'` or `'.join(required)}`; the whole body at most "
        f"{max_mib:g} MiB (`MAX_AUDIO_BYTES`).",
        "content": {
            "multipart/form-data": {"schema": schema, "encoding": {"file": {"contentType": _FILE_CONTENT_TYPES}}}
        },
    }


def _format_parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": "The answer's format (also a form field; else the Accept header picks).",
            "schema": {"type": "string", "enum": list(outputs.FORMATS)},
        }
        for name in ("response_format", "format")
    ]


def _formatted_result(json_schema: dict[str, Any]) -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    return {
        "description": "The result in the requested format",
        "content": {
            "application/json": {"schema": {"anyOf": [json_schema, _ref("DiarizedJson")]}},
            **{mime: text for mime in outputs.TEXT_FORMATS.values()},
        },
    }


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error_responses(*errors: type[e.ServiceError] | tuple[int, str]) -> dict[str, Any]:
    """The error answers of an operation: by status, the codes it may carry."""
    codes: dict[int, list[str]] = {}
    for error in errors:
        status, code = error if isinstance(error, tuple) else (error.http_status, error.code)
        if code not in codes.setdefault(status, []):
            codes[status].append(code)
    out: dict[str, Any] = {}
    for status, names in sorted(codes.items()):
        schema = {
            "allOf": [_ref("Error")],
            "properties": {"error": {"properties": {"code": {"enum": names}}}},
        }
        response: dict[str, Any] = {
            "description": f"{_STATUS_TEXT.get(status, 'Error')}: {', '.join(names)}",
            "content": {"application/json": {"schema": schema}},
        }
        if status == 503:
            response["headers"] = {"Retry-After": {"schema": {"type": "string"}, "required": True}}
        out[str(status)] = response
    return out


_JOB_STORE = (e.StorageUnavailableError, e.StoreCredentialsError)
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The job's id, as `POST /v1/jobs` answered it.",
}


def _job_operations(api_security: dict[str, Any], auth_errors: tuple[Any, ...], max_mib: float) -> dict[str, Any]:
    """``/v1/jobs``: submit (202), list, status (JSON or RTTM), delete."""
    fields = {name: value for name, value in _common_fields().items() if name != "response_format"}
    fields["voiceprints"] = _diarize_fields()["voiceprints"]
    fields["tasks"] = {
        "type": "string",
        "description": "`diarization,vad` (the default) or `vad`.",
        "pattern": "^\\s*(diarization|vad)\\s*(,\\s*(diarization|vad)\\s*)?$",
    }
    fields["object"] = {
        "type": "string",
        "maxLength": 1088,
        "description": "Instead of `file`: `<bucket>/<key>` of an object already in a bucket the service "
        "reads (`S3_ALLOWED_BUCKETS`); the consumer reads it, the shim does not.",
    }
    fields["webhook_url"] = {
        "type": "string",
        "maxLength": 2048,
        "description": "Where the finished job (completed or failed) is POSTed, signed as Standard Webhooks "
        "say; retried for about a day. `https` to a public address, unless `WEBHOOK_ALLOWED_HOSTS` or "
        "`WEBHOOK_ALLOW_HTTP` open more.",
    }
    common = (*auth_errors, *_UNEXPECTED, *_JOB_STORE)
    return {
        "/v1/jobs": {
            "post": {
                "tags": ["jobs"],
                "operationId": "submitJob",
                "summary": "Start an asynchronous job",
                "description": "Stores the audio and answers at once with the job (`Location`: its URL). The job "
                "runs on the event pipeline's consumers, outlives this shim, and is limited by `MAX_AUDIO_SECONDS`, "
                "not by the HTTP timeout. `voiceprints` and `transcript` are stored beside the job's results.",
                **api_security,
                "requestBody": _multipart(fields, max_mib, required=("file", "object")),
                "responses": {
                    "202": {
                        **_json_response("The job, queued", _ref("Job")),
                        "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
                    },
                    **_error_responses(
                        *common,
                        e.InvalidRequestError,
                        e.MissingFileError,
                        e.UnsupportedMediaTypeError,
                        e.PayloadTooLargeError,
                        e.InvalidSpeakerOptionsError,
                        e.InvalidVoiceprintError,
                        e.TooManyVoiceprintsError,
                        e.InvalidTranscriptError,
                        e.WebhookUrlRefusedError,
                        e.AccessDeniedError,
                        _INCOMPLETE_BODY,
                        _SLOW_BODY,
                    ),
                },
            },
            "get": {
                "tags": ["jobs"],
                "operationId": "listJobs",
                "summary": "Recent jobs, newest first",
                **api_security,
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "`next_cursor`"},
                ],
                "responses": {
                    "200": _json_response("A page of jobs", _ref("JobList")),
                    **_error_responses(*common, e.InvalidRequestError),
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "tags": ["jobs"],
                "operationId": "getJob",
                "summary": "A job's status, and its result once completed",
                "description": "`queued`, `running` (with `progress`), `completed` (with `result`, the stored result "
                "document) or `failed` (with `error`). `format` `rttm`, `srt`, `vtt` or `diarized_json` (or the "
                "`Accept` header): a completed job's result in that format, as `/v1/diarize` gives it.",
                **api_security,
                "parameters": [_JOB_ID, *_format_parameters()],
                "responses": {
                    "200": _formatted_result(_ref("Job")),
                    **_error_responses(*common, e.InvalidRequestError, e.JobNotFoundError, e.JobNotCompletedError),
                },
            },
            "delete": {
                "tags": ["jobs"],
                "operationId": "deleteJob",
                "summary": "Cancel a queued job, or delete a job's audio and results",
                **api_security,
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _json_response("Deleted", _ref("DeletedJob")),
                    **_error_responses(*common, e.JobNotFoundError),
                },
            },
        },
    }


def _receiver_operation(settings: Settings) -> dict[str, Any]:
    limit = settings.receiver.max_event_bytes
    event = {
        "type": "object",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "type": {"type": "string", "enum": ["dev.diarization.audio.uploaded"]},
            "datacontenttype": {"type": "string"},
            "data": _ref("AudioUploaded"),
        },
    }
    return {
        "tags": ["Knative receiver"],
        "operationId": "receiveEvent",
        "summary": "Take one pushed event (mounted only with RECEIVER_ENABLED)",
        "description": "A CloudEvent `dev.diarization.audio.uploaded` (structured, or binary with `ce-*` headers "
        "and the data as the body), a KafkaSource's wrapping of a MinIO notification, or a MinIO webhook. "
        f"At most {limit} bytes (`EVENT_MAX_BYTES`). Answers follow Knative's delivery rules: 2xx bodies are "
        "empty or a binary-mode result CloudEvent; 5xx is retried by the sender.",
        "security": [{"senderToken": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/cloudevents+json": {"schema": event},
                "application/json": {"schema": {"anyOf": [_ref("AudioUploaded"), _ref("MinioNotification")]}},
            },
        },
        "responses": {
            "200": {
                "description": "The result as a binary-mode CloudEvent (`ce-type` "
                "dev.diarization.job.completed or dev.diarization.job.failed): its data is the body",
                "headers": {
                    "ce-type": {"schema": {"type": "string"}, "required": True},
                    "ce-id": {"schema": {"type": "string"}, "required": True},
                    "ce-source": {"schema": {"type": "string"}, "required": True},
                    "ce-specversion": {"schema": {"type": "string"}, "required": True},
                },
                "content": {"application/json": {"schema": {"anyOf": [_ref("JobCompleted"), _ref("JobFailed")]}}},
            },
            "202": {"description": "Accepted, no body: the result goes to K_SINK, or nothing was to be done"},
            **_error_responses(
                e.InvalidEventError,
                e.UnsupportedEventError,
                e.UnauthorizedError,
                e.PayloadTooLargeError,
                (503, "incomplete_body"),
                e.SenderKeysUnavailableError,
                e.BusyError,
                e.ModelNotReadyError,
                e.EngineBrokenError,
                e.ModelLoadError,
                e.StorageUnavailableError,
                e.StoreCredentialsError,
                e.ObjectChangedError,
                e.PublishError,
                e.RunningElsewhereError,
                *_UNEXPECTED,
            ),
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas() -> dict[str, Any]:
    number = {"type": "number"}
    segment = {
        "type": "object",
        "required": ["start", "end", "speaker"],
        "properties": {
            "start": number,
            "end": number,
            "speaker": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }
    transcript = {
        "type": "object",
        "required": ["segments", "words"],
        "properties": {
            "segments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["start", "end", "speaker", "text"],
                    "properties": {"start": number, "end": number, "speaker": {"type": "string"}, "text": {}},
                },
            },
            "words": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["start", "end", "speaker", "word"],
                    "properties": {"start": number, "end": number, "speaker": {"type": "string"}, "word": {}},
                },
            },
        },
    }
    extras = {
        "confidence": {
            "type": "object",
            "required": ["mean", "low_turns", "low_seconds"],
            "properties": {"mean": number, "low_turns": {"type": "integer"}, "low_seconds": number},
        },
        "identified": {
            "type": "object",
            "description": "name -> the anonymous speaker it replaced, and the similarity",
            "additionalProperties": {
                "type": "object",
                "required": ["speaker", "similarity"],
                "properties": {"speaker": {"type": "string"}, "similarity": number},
            },
        },
        "embeddings": {
            "type": "object",
            "required": ["embedding_model", "speakers"],
            "properties": {
                "embedding_model": {"type": "string"},
                "speakers": {"type": "object", "additionalProperties": {"type": "array", "items": number}},
            },
        },
        "transcript": transcript,
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "Segment": segment,
        "Diarization": {
            "type": "object",
            "required": ["segments", "num_speakers"],
            "properties": {
                "segments": {"type": "array", "items": _ref("Segment")},
                "num_speakers": {"type": "integer", "minimum": 0},
                **extras,
            },
        },
        "OpenAIDiarization": {
            "type": "object",
            "required": ["model", "duration", "num_speakers", "segments"],
            "properties": {
                "model": {"type": "string"},
                "duration": number,
                "num_speakers": {"type": "integer", "minimum": 0},
                "segments": {"type": "array", "items": _ref("Segment")},
                **extras,
            },
        },
        "DiarizedJson": {
            "type": "object",
            "description": "OpenAI's diarized_json shape",
            "required": ["task", "duration", "text", "segments"],
            "properties": {
                "task": {"const": "transcribe"},
                "duration": number,
                "text": {"type": "string"},
                "segments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "id", "start", "end", "speaker", "text"],
                        "properties": {
                            "type": {"const": "transcript.text.segment"},
                            "id": {"type": "string"},
                            "start": number,
                            "end": number,
                            "speaker": {"type": "string"},
                            "text": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Speech": {
            "type": "object",
            "required": ["speech_segments"],
            "properties": {
                "speech_segments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["start", "end"],
                        "properties": {"start": number, "end": number},
                    },
                }
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "model_loaded", "device"],
            "properties": {
                "status": {"enum": ["healthy", "stuck"]},
                "model_loaded": {"type": "boolean"},
                "device": {"type": "string"},
                "error": {},
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["ready", "loading", "failed"]},
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
        "Capabilities": {
            "type": "object",
            "required": ["jobs", "max_audio_bytes"],
            "properties": {"jobs": {"type": "boolean"}, "max_audio_bytes": {"type": "integer", "minimum": 1}},
        },
        "Job": {
            "type": "object",
            "required": ["id", "status", "created_at", "links"],
            "properties": {
                "id": {"type": "string"},
                "status": {"enum": ["queued", "running", "completed", "failed"]},
                "created_at": {"type": "string", "format": "date-time"},
                "filename": {"type": "string"},
                "options": {"type": "object"},
                "webhook_url": {"type": "string"},
                "progress": {
                    "type": "object",
                    "properties": {
                        "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                        "stage": {"type": "string"},
                    },
                },
                "result": _ref("JobCompleted"),
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
                "links": {"type": "object", "required": ["self"], "properties": {"self": {"type": "string"}}},
            },
        },
        "JobList": {
            "type": "object",
            "required": ["jobs", "next_cursor"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("Job")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "DeletedJob": {
            "type": "object",
            "required": ["id", "deleted", "status"],
            "properties": {"id": {"type": "string"}, "deleted": {"const": True}, "status": {"type": "string"}},
        },
        "Voiceprint": event_schema("voiceprint"),
        "AudioUploaded": event_schema("audio-uploaded"),
        "MinioNotification": event_schema("minio-notification"),
        "JobCompleted": event_schema("job-completed"),
        "JobFailed": event_schema("job-failed"),
    }


def event_schema(name: str) -> dict[str, Any]:
    """The package's JSON Schema ``name`` with every reference resolved in place, for a document of its own."""
    return _inlined(load_schema(name), f"{name}.json")


def _inlined(node: Any, file: str) -> Any:
    if isinstance(node, list):
        return [_inlined(item, file) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target, _, pointer = node["$ref"].partition("#")
        target = target or file
        found: Any = load_schema(target.removesuffix(".json"))
        for part in filter(None, pointer.split("/")):
            found = found[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_inlined(copy.deepcopy(found), target), **_inlined(rest, file)}
    return {k: _inlined(v, file) for k, v in node.items() if k not in ("$schema", "$id", "$defs")}

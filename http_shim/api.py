"""The synchronous API, compatible with the previous server: ``/v1/diarize`` and ``/v1/vad``."""

from __future__ import annotations

from dataclasses import replace
from typing import IO

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.datastructures import FileStorage, MultiDict

from consumer.analyzer import Analyzer
from consumer.engine import EngineResult
from consumer.engine.identity import MAX_ENROLMENT_SECONDS, make_voiceprint
from consumer.engine.model_path import model_name
from consumer.errors import AudioTooLongError, InvalidVoiceprintError, MissingFileError, UnsupportedMediaTypeError
from consumer.formats import diarization_json, rttm_uri, vad_json
from consumer.options import ALL_TASKS, OPTION_NAMES, JobOptions, Task, parse_options
from consumer.transcript import to_json
from consumer.voiceprints import MAX_DOCUMENT_BYTES, Voiceprint
from http_shim import outputs
from http_shim.auth import require_api_key
from http_shim.state import state

blueprint = Blueprint("api", __name__, url_prefix="/v1")


def _analyzer() -> Analyzer:
    return state().analyzer


@blueprint.before_request
def authenticate() -> None:
    """Require ``Authorization: Bearer <API_KEY>`` unless the API was opened (``http_shim.auth``)."""
    require_api_key(state().settings)


@blueprint.post("/diarize")
def diarize() -> Response:
    """Who spoke when: JSON segments, or RTTM with ``Accept: text/rttm`` / ``format=rttm``.

    With a ``transcript`` part, the JSON gains the transcript with a speaker on every
    segment and word, and ``diarized_json``, ``srt`` and ``vtt`` carry it (see ``outputs``).
    """
    upload = single_file()
    fmt = outputs.requested_format()
    transcript = outputs.transcript_part()
    options = outputs.with_transcript(options_from_form(request.form, ALL_TASKS, request.files), transcript)
    result = analyze_sync(upload.stream, options)
    if fmt != "json":
        return outputs.render(fmt, result, transcript, rttm_uri(upload.filename or "audio"))
    body = diarization_json(result, _analyzer().engine.embedding_model if options.return_embeddings else None)
    if transcript is not None:
        body["transcript"] = to_json(outputs.attributed(result, transcript))
    return jsonify(body)


@blueprint.post("/voiceprints")
def voiceprints() -> Response:
    """A voiceprint of the one speaker of an enrolment clip (3-60 s of speech; any accepted format).

    The service keeps nothing: the caller stores the document and sends it back with jobs
    (``voiceprints``). 422 ``voiceprint_too_short`` / ``voiceprint_multiple_speakers``.
    """
    upload = single_file()
    return jsonify(enrol(upload.stream, parse_options({"audio_stream": request.form.get("audio_stream")})).to_dict())


def enrol(source: IO[bytes], options: JobOptions) -> Voiceprint:
    """The voiceprint of an enrolment clip, at most ``MAX_ENROLMENT_SECONDS`` long."""
    analyzer = _analyzer()
    limits = replace(analyzer.limits, max_seconds=MAX_ENROLMENT_SECONDS)
    result = analyzer.analyze(source, replace(options, tasks=ALL_TASKS), job_id=g.request_id, limits=limits)
    return make_voiceprint(result, analyzer.engine.embedding_model, model_name(state().settings.engine.model))


@blueprint.post("/vad")
def vad() -> Response:
    """Where there is speech: JSON speech segments. Of the options, only ``audio_stream`` applies."""
    upload = single_file()
    options = parse_options({"audio_stream": request.form.get("audio_stream")}, tasks=frozenset({Task.VAD}))
    result = analyze_sync(upload.stream, options)
    return jsonify(vad_json(result))


def analyze_sync(source: IO[bytes], options: JobOptions) -> EngineResult:
    """``source`` analyzed for this request, up to the sync doors' longest audio (``SYNC_MAX_AUDIO_SECONDS``,
    at most ``MAX_AUDIO_SECONDS``): longer audio is refused ``audio_too_long`` with the door that takes it."""
    analyzer, settings = _analyzer(), state().settings
    limits = replace(analyzer.limits, max_seconds=min(analyzer.limits.max_seconds, settings.http.sync_max_seconds))
    try:
        return analyzer.analyze(source, options, job_id=g.request_id, limits=limits)
    except AudioTooLongError as exc:
        if limits.max_seconds >= analyzer.limits.max_seconds:
            raise  # too long for any door
        door = (
            "submit it to POST /v1/jobs"
            if state().jobs is not None
            else "upload it to the bucket or send an audio.uploaded event"
        )
        raise AudioTooLongError(
            f"{exc.message}: a request waits at most {settings.http.request_timeout:.0f} s, so the sync API takes "
            f"up to {limits.max_seconds:.0f} s of audio (SYNC_MAX_AUDIO_SECONDS); for up to "
            f"{analyzer.limits.max_seconds:.0f} s, {door}"
        ) from exc


def single_file() -> FileStorage:
    """The one ``file`` part of a multipart request; 415 or 400 otherwise."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            f"send the audio as multipart/form-data with a 'file' field, not {request.mimetype or 'no content type'}"
        )
    files = request.files.getlist("file")
    if len(files) != 1:
        raise MissingFileError(f"expected exactly one 'file' field, got {len(files)}")
    return files[0]


def options_from_form(
    form: MultiDict[str, str], tasks: frozenset[Task], files: MultiDict[str, FileStorage] | None = None
) -> JobOptions:
    """``JobOptions`` from the form fields (the endpoint fixes the tasks); 400 on bad values.

    ``voiceprints`` (a JSON object label -> voiceprint) may also come as a file part.
    """
    fields: dict[str, object] = {name: form.get(name) for name in OPTION_NAMES if name != "tasks"}
    part = files.get("voiceprints") if files is not None else None
    if part is not None:
        fields["voiceprints"] = part.stream.read(MAX_DOCUMENT_BYTES + 1)
        if len(fields["voiceprints"]) > MAX_DOCUMENT_BYTES:  # type: ignore[arg-type]
            raise InvalidVoiceprintError(f"voiceprints are larger than {MAX_DOCUMENT_BYTES} bytes")
    return parse_options(fields, tasks=tasks)

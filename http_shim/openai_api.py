"""An OpenAI-style door: ``POST /v1/audio/diarization``, shaped like ``/v1/audio/transcriptions``.

Multipart ``file``; ``model`` (accepted and reported: this service serves one model);
``num_speakers`` / ``min_speakers`` / ``max_speakers``; an optional ``transcript`` to
attribute; ``response_format`` = ``json`` | ``diarized_json`` | ``rttm`` | ``srt`` | ``vtt``;
known speakers as ``known_speaker_names[]`` with one ``known_speaker_references[]`` each,
a voiceprint document or, as OpenAI takes them, an audio clip as a ``data:`` URL (enrolled
on the spot, like ``POST /v1/voiceprints``). ``/v1/diarize`` stays as the previous server had it.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import replace

from flask import Blueprint, Response, jsonify, request

from consumer.engine.model_path import model_name
from consumer.errors import InvalidVoiceprintError, TooManyVoiceprintsError
from consumer.formats import diarization_json, rttm_uri, segment
from consumer.options import ALL_TASKS, JobOptions
from consumer.transcript import to_json
from consumer.voiceprints import MAX_VOICEPRINTS, KnownSpeakers, Voiceprint, known_speakers, parse_voiceprint
from http_shim import api, outputs
from http_shim.state import state

blueprint = Blueprint("openai", __name__, url_prefix="/v1/audio")
blueprint.before_request(api.authenticate)


@blueprint.post("/diarization")
def diarization() -> Response:
    """Who spoke when, in the answer shape the client asks for."""
    upload = api.single_file()
    fmt = outputs.requested_format()
    transcript = outputs.transcript_part()
    options = outputs.with_transcript(api.options_from_form(request.form, ALL_TASKS, request.files), transcript)
    known = known_speakers_from_form()
    if known:
        options = replace(options, voiceprints=known)
    result = api.analyze_sync(upload.stream, options)
    if fmt != "json":
        return outputs.render(fmt, result, transcript, rttm_uri(upload.filename or "audio"))
    body: dict[str, object] = {
        "model": model_name(state().settings.engine.model),
        "duration": round(result.duration, 3),
        "num_speakers": result.num_speakers,
        "segments": [segment(t) for t in result.turns],
    }
    embedding_model = state().analyzer.engine.embedding_model if options.return_embeddings else None
    full = diarization_json(result, embedding_model)
    for extra in ("confidence", "identified", "embeddings"):  # those the job has
        if extra in full:
            body[extra] = full[extra]
    if transcript is not None:
        body["transcript"] = to_json(outputs.attributed(result, transcript))
    return jsonify(body)


def known_speakers_from_form() -> KnownSpeakers:
    """``known_speaker_names[]`` paired with ``known_speaker_references[]``, in order."""
    names = request.form.getlist("known_speaker_names[]") or request.form.getlist("known_speaker_names")
    references = request.form.getlist("known_speaker_references[]") or request.form.getlist("known_speaker_references")
    if len(names) != len(references):
        raise InvalidVoiceprintError(
            f"give one known_speaker_references[] per known_speaker_names[] ({len(names)} names, "
            f"{len(references)} references)"
        )
    if len(names) > MAX_VOICEPRINTS:  # before any clip is enrolled: each costs an engine run
        raise TooManyVoiceprintsError(f"at most {MAX_VOICEPRINTS} voiceprints per job, got {len(names)}")
    return known_speakers([(name, _reference(name, ref)) for name, ref in zip(names, references, strict=True)])


def _reference(name: str, reference: str) -> Voiceprint:
    """A voiceprint document, or an audio clip as a ``data:`` URL enrolled now."""
    if not reference.startswith("data:"):
        return parse_voiceprint(reference, name)
    header, _, payload = reference.partition(",")
    if not header.endswith(";base64"):
        raise InvalidVoiceprintError(f"the reference of {name!r} must be a base64 data: URL or a voiceprint")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidVoiceprintError(f"the reference of {name!r} is not valid base64") from None
    return api.enrol(io.BytesIO(audio), JobOptions())

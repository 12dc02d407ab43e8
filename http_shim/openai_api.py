"""An OpenAI-style door: ``POST /v1/audio/diarization``, shaped like ``/v1/audio/transcriptions``.

Multipart ``file``; ``model`` (accepted and reported: this service serves one model);
``num_speakers`` / ``min_speakers`` / ``max_speakers``; an optional ``transcript`` to
attribute; ``response_format`` = ``json`` | ``diarized_json`` | ``rttm`` | ``srt`` | ``vtt``.
``/v1/diarize`` stays as the previous server had it.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from consumer.engine.pyannote_engine import model_name
from consumer.formats import rttm_uri
from consumer.options import ALL_TASKS
from consumer.transcript import to_json
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
    options = outputs.with_transcript(api.options_from_form(request.form, tasks=ALL_TASKS), transcript)
    result = state().analyzer.analyze(upload.stream, options, job_id=g.request_id)
    if fmt != "json":
        return outputs.render(fmt, result, transcript, rttm_uri(upload.filename or "audio"))
    body: dict[str, object] = {
        "model": model_name(state().settings.engine.model),
        "duration": round(result.duration, 3),
        "num_speakers": result.num_speakers,
        "segments": [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in result.turns],
    }
    if transcript is not None:
        body["transcript"] = to_json(outputs.attributed(result, transcript))
    return jsonify(body)

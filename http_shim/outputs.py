"""What the sync doors answer with: response formats, and a transcript part to attribute.

``/v1/diarize`` and ``/v1/audio/diarization`` share these: a request may carry a
``transcript`` (file part or form field; OpenAI ``verbose_json``, WhisperX JSON, SRT or
WebVTT) and ask for ``diarized_json``, ``srt`` or ``vtt`` besides JSON and RTTM. Without a
transcript those three carry the speaker turns themselves, with empty text.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Response, jsonify, request

from consumer import transcript as transcripts
from consumer.engine import EngineResult, SpeakerTurn
from consumer.errors import InvalidRequestError
from consumer.formats import to_rttm
from consumer.options import JobOptions

RTTM_MIMETYPE = "text/rttm"
TEXT_FORMATS = {"rttm": RTTM_MIMETYPE, "srt": "application/x-subrip", "vtt": "text/vtt"}
FORMATS = ("json", "diarized_json", *TEXT_FORMATS)


def requested_format(default: str = "json") -> str:
    """``response_format`` or ``format`` from the query or form, else the ``Accept`` header's pick."""
    fmt = (
        request.args.get("response_format")
        or request.form.get("response_format")
        or request.args.get("format")
        or request.form.get("format")
        or ""
    ).lower()
    if fmt:
        if fmt not in FORMATS:
            raise InvalidRequestError(f"response_format must be one of {', '.join(FORMATS)}, got {fmt[:40]!r}")
        return fmt
    accepted = request.accept_mimetypes.best_match(["application/json", *TEXT_FORMATS.values()])
    return next((name for name, mime in TEXT_FORMATS.items() if mime == accepted), default)


def transcript_part() -> transcripts.Transcript | None:
    """The request's ``transcript`` (a file part, or a form field), parsed; ``None`` when absent."""
    upload = request.files.get("transcript")
    if upload is not None:
        data = upload.stream.read(transcripts.MAX_TRANSCRIPT_BYTES + 1)
    elif "transcript" in request.form:
        data = request.form["transcript"].encode()
    else:
        return None
    return transcripts.parse(data)


def with_transcript(options: JobOptions, transcript: transcripts.Transcript | None) -> JobOptions:
    """Words are attributed against the exclusive diarization: a transcript asks for it."""
    return options if transcript is None else replace(options, exclusive=True)


def attributed(result: EngineResult, transcript: transcripts.Transcript | None) -> transcripts.Transcript:
    """The transcript with speakers, or the turns as a transcript without text."""
    if transcript is None:
        return transcripts.from_turns(result.turns)
    transcripts.check_fits(transcript, result.duration)
    return transcripts.attribute(transcript, result.turns)


def render(fmt: str, result: EngineResult, transcript: transcripts.Transcript | None, uri: str) -> Response:
    """The answer in one of the shared formats other than each door's own ``json``."""
    if fmt == "rttm":
        return Response(to_rttm(result, uri), mimetype=RTTM_MIMETYPE)
    return _render_words(fmt, attributed(result, transcript), result.duration)


def render_stored(fmt: str, document: dict[str, Any]) -> Response:
    """A stored result document (a completed job's) as ``diarized_json``, ``srt`` or ``vtt``, as
    ``render`` gives them: its attributed ``transcript`` when it has one, else its speaker turns."""
    stored = document.get("transcript")
    if isinstance(stored, dict):
        words = transcripts.from_stored(stored)
    else:
        segments = document.get("segments", [])
        words = transcripts.from_turns(
            SpeakerTurn(float(s["start"]), float(s["end"]), str(s["speaker"])) for s in segments
        )
    return _render_words(fmt, words, float(document.get("duration", 0.0)))


def _render_words(fmt: str, words: transcripts.Transcript, duration: float) -> Response:
    if fmt == "diarized_json":
        return jsonify(transcripts.to_diarized_json(words, duration))
    if fmt == "srt":
        return Response(transcripts.to_srt(words), mimetype=TEXT_FORMATS["srt"])
    if fmt == "vtt":
        return Response(transcripts.to_vtt(words), mimetype=TEXT_FORMATS["vtt"])
    raise ValueError(f"no shared rendering for {fmt!r}")

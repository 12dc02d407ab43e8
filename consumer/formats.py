"""How results are written out: the previous server's JSON shapes and RTTM."""

from __future__ import annotations

import re
from typing import Any

from consumer.engine import EngineResult, SpeakerTurn
from consumer.events import InputRef, ObjectRef, ResultLocation
from consumer.options import JobOptions

_UNSAFE_URI = re.compile(r"[^A-Za-z0-9._-]+")


def diarization_json(result: EngineResult, embedding_model: str | None = None) -> dict[str, Any]:
    """``{"segments": [{"start","end","speaker","confidence"}], "num_speakers"}`` as ``POST /v1/diarize`` answers.

    Where the turns have confidences, ``confidence`` summarises them; where speakers were
    named after voiceprints, ``identified`` says which; with ``embedding_model`` (the
    engine's, when the job asked for ``return_embeddings``), ``embeddings`` holds each
    speaker's centroid.
    """
    out: dict[str, Any] = {"segments": [segment(t) for t in result.turns], "num_speakers": result.num_speakers}
    scored = [t for t in result.turns if t.confidence is not None]
    if scored:
        seconds = sum(t.end - t.start for t in scored)
        low = [t for t in scored if t.confidence is not None and t.confidence < LOW_CONFIDENCE]
        out["confidence"] = {
            "mean": round(sum((t.end - t.start) * (t.confidence or 0.0) for t in scored) / seconds, 3)
            if seconds
            else 0.0,
            "low_turns": len(low),
            "low_seconds": round(sum(t.end - t.start for t in low), 3),
        }
    if result.identified:
        out["identified"] = {
            name: {"speaker": speaker, "similarity": similarity}
            for name, (speaker, similarity) in sorted(result.identified.items())
        }
    if embedding_model is not None:
        out["embeddings"] = {
            "embedding_model": embedding_model,
            "speakers": {label: [round(float(x), 6) for x in c] for label, c in sorted(result.centroids.items())},
        }
    return out


# turns under this confidence are the doubtful ones (docs/confidence.md)
LOW_CONFIDENCE = 0.5


def segment(turn: SpeakerTurn) -> dict[str, Any]:
    """One speaker turn as results write it."""
    out: dict[str, Any] = {"start": turn.start, "end": turn.end, "speaker": turn.speaker}
    if turn.confidence is not None:
        out["confidence"] = turn.confidence
    return out


def vad_json(result: EngineResult) -> dict[str, Any]:
    """``{"speech_segments": [{"start","end"}]}`` as ``POST /v1/vad`` answers."""
    return {"speech_segments": [{"start": s.start, "end": s.end} for s in result.speech]}


def rttm_uri(name: str) -> str:
    """A file id usable in RTTM (no whitespace), derived from a file or object name."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return _UNSAFE_URI.sub("_", stem).strip("._-") or "audio"


def to_rttm(result: EngineResult, uri: str) -> str:
    """The speaker turns as RTTM lines (NIST Rich Transcription Time Marked)."""
    return "".join(
        f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n" for t in result.turns
    )


def result_document(
    input_ref: InputRef,
    obj: ObjectRef,
    options: JobOptions,
    result: EngineResult,
    model: str,
    location: ResultLocation,
    embedding_model: str = "",
) -> dict[str, Any]:
    """The result of a job as stored in ``<prefix><bucket>/<key>/<digest>.json`` (``location``) and sent
    in the completed event; it names the RTTM of the same run (``results.rttm``)."""
    return {
        "input": input_ref.to_dict(),
        "object": obj.to_dict(),
        "status": "completed",
        "options": options.to_dict(),
        **diarization_json(result, embedding_model if options.return_embeddings else None),
        **vad_json(result),
        "duration": round(result.duration, 3),
        "inference_seconds": round(result.inference_seconds, 3),
        "stage_seconds": result.stages.rounded(),
        "model": model,
        "reused": False,
        "results": {"bucket": location.bucket, "json": location.json_key, "rttm": location.rttm_key},
    }


def summarized(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` without its segment lists (and transcript), for an event that must stay small.

    The lists become a ``summary`` (how many segments, speech and talk time per speaker);
    every segment stays in the result objects that ``results`` names.
    """
    segments = document.get("segments", [])
    speech = document.get("speech_segments", [])
    talk: dict[str, float] = {}
    for segment in segments:
        talk[segment["speaker"]] = talk.get(segment["speaker"], 0.0) + segment["end"] - segment["start"]
    rest = {
        name: value for name, value in document.items() if name not in ("segments", "speech_segments", "transcript")
    }
    return {
        **rest,
        "summary": {
            "segments": len(segments),
            "speech_segments": len(speech),
            "speech_seconds": round(sum(s["end"] - s["start"] for s in speech), 3),
            "speaker_seconds": {speaker: round(seconds, 3) for speaker, seconds in sorted(talk.items())},
        },
    }

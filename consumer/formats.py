"""How results are written out: the previous server's JSON shapes and RTTM."""

from __future__ import annotations

import re
from typing import Any

from consumer.engine import EngineResult, JobOptions
from consumer.events import InputRef, ObjectRef

_UNSAFE_URI = re.compile(r"[^A-Za-z0-9._-]+")


def diarization_json(result: EngineResult) -> dict[str, Any]:
    """``{"segments": [{"start","end","speaker"}], "num_speakers"}`` as ``POST /v1/diarize`` answers."""
    return {
        "segments": [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in result.turns],
        "num_speakers": result.num_speakers,
    }


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
        f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
        for t in result.turns
    )


def options_dict(options: JobOptions) -> dict[str, Any]:
    """Job options as in events and result documents (unset speaker hints left out)."""
    out: dict[str, Any] = {
        name: getattr(options, name)
        for name in ("num_speakers", "min_speakers", "max_speakers")
        if getattr(options, name) is not None
    }
    out["exclusive"] = options.exclusive
    out["tasks"] = sorted(task.value for task in options.tasks)
    return out


def result_document(
    input_ref: InputRef,
    obj: ObjectRef,
    options: JobOptions,
    result: EngineResult,
    model: str,
    results_bucket: str,
    result_keys: tuple[str, str],
) -> dict[str, Any]:
    """The result of a job as stored in ``<prefix><key>.json`` and sent in the completed event."""
    return {
        "input": input_ref.to_dict(),
        "object": obj.to_dict(),
        "status": "completed",
        "options": options_dict(options),
        **diarization_json(result),
        **vad_json(result),
        "duration": round(result.duration, 3),
        "inference_seconds": round(result.inference_seconds, 3),
        "model": model,
        "reused": False,
        "results": {"bucket": results_bucket, "json": result_keys[0], "rttm": result_keys[1]},
    }

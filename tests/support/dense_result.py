"""A 4-hour, densely diarized result built without running the model: the largest answer
a valid job can produce (short turns of many speakers, every one a separate speech region)."""

from __future__ import annotations

import random

from consumer.engine import EngineResult, SpeakerTurn, SpeechRegion
from consumer.events import AudioJobRequested, DiarizationCompleted, InputRef, ObjectRef, ResultLocation
from consumer.formats import result_document
from consumer.options import JobOptions

FOUR_HOURS = 4 * 3600.0


def dense_result(turns: int, duration: float = FOUR_HOURS, speakers: int = 12, seed: int = 7) -> EngineResult:
    """``turns`` speaker turns over ``duration`` seconds, each followed by a short pause, as the engine rounds them."""
    rng = random.Random(seed)
    step = duration / turns
    made = []
    for index in range(turns):
        start = index * step + rng.uniform(0.0, step * 0.1)
        end = (index + 1) * step - rng.uniform(0.05, step * 0.2)
        made.append(SpeakerTurn(round(start, 3), round(end, 3), f"SPEAKER_{rng.randrange(speakers):02d}"))
    return EngineResult(
        turns=tuple(made),
        speech=tuple(SpeechRegion(t.start, t.end) for t in made),
        num_speakers=speakers,
        duration=duration,
        inference_seconds=5400.0,
    )


def dense_completed(turns: int, event_id: str = "dense-1", key: str = "long/4h-meeting.wav") -> DiarizationCompleted:
    """The completed outcome of ``dense_result(turns)`` for an ``audio.uploaded`` event naming ``key``."""
    ref = InputRef(event_id, "/tests", "dev.diarization.audio.uploaded", "00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    obj = ObjectRef("audio", key, "v1", "e" * 32, 460_800_000)
    location = ResultLocation("diarization-results", f"results/{key}.json", f"results/{key}.rttm")
    request = AudioJobRequested(ref, obj, JobOptions())
    document = result_document(ref, obj, request.options, dense_result(turns), "offline-default", location)
    return DiarizationCompleted(request, document)

"""Compressed formats diarize like the WAV they were made from: DER within 1 point.

pyannote's sample (real speech, 2 speakers) and a generated 3-speaker conversation are
encoded at test time with ffmpeg as MP3 (128 kbit/s), AAC in M4A (128 kbit/s) and Opus in
WebM (64 kbit/s), each decoded by the service's own decoder (``consumer.audio.decode``:
FFmpeg through PyAV for these, libsndfile for the WAV) and diarized by the real engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyannote.core import Annotation, Segment, Timeline
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

from consumer.audio import decode
from consumer.config import AudioLimits
from consumer.engine import EngineResult
from consumer.options import JobOptions
from tests.support import media
from tests.support.conversation import conversation

pytestmark = pytest.mark.model

KINDS = ("mp3", "m4a", "webm")
MAX_DER_GAP = 0.01  # one point of DER


def _diarize(engine, data: bytes) -> EngineResult:
    audio = decode(data, AudioLimits())
    return engine.run(audio.samples, audio.sample_rate, JobOptions(), None)


def _hypothesis(result: EngineResult) -> Annotation:
    annotation = Annotation()
    for i, turn in enumerate(result.turns):
        annotation[Segment(turn.start, turn.end), i] = turn.speaker
    return annotation


def _parity(engine, name: str, wav: Path, reference: Annotation, metric: DiarizationErrorRate) -> list[str]:
    """DER of the WAV and of each encoding; the rows of the table, and the gaps over one point."""
    data = wav.read_bytes()
    baseline = _diarize(engine, data)
    uem = Timeline([Segment(0, baseline.duration)])
    wav_der = metric(reference, _hypothesis(baseline), uem=uem)
    print(f"\n{name:14} wav  DER {wav_der:6.2%}  speakers {baseline.num_speakers}")
    gaps = []
    for kind in KINDS:
        result = _diarize(engine, media.transcode(data, kind))
        der = metric(reference, _hypothesis(result), uem=uem)
        print(f"{name:14} {kind:4} DER {der:6.2%}  speakers {result.num_speakers}  gap {der - wav_der:+.2%}")
        if abs(der - wav_der) > MAX_DER_GAP:
            gaps.append(f"{name} {kind}: DER {der:.2%} against {wav_der:.2%} for the WAV")
    return gaps


def test_sample_der_parity(engine, sample):
    wav, rttm = sample
    reference = next(iter(load_rttm(str(rttm)).values()))
    gaps = _parity(engine, "sample", wav, reference, DiarizationErrorRate())
    assert not gaps, gaps


def test_generated_conversation_der_parity(engine):
    talk = conversation(num_speakers=3, duration=90, seed=3)
    reference = Annotation()
    for i, turn in enumerate(talk.turns):
        reference[Segment(turn.start, turn.end), i] = turn.speaker
    gaps = _parity(engine, "conversation", talk.wav, reference, DiarizationErrorRate(collar=0.5))
    assert not gaps, gaps

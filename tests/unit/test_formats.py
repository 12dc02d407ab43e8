"""Result shapes match the previous server's API; RTTM is well-formed."""

import pytest

from consumer.engine import EngineResult, SpeakerTurn, SpeechRegion
from consumer.formats import diarization_json, rttm_uri, to_rttm, vad_json

RESULT = EngineResult(
    turns=(SpeakerTurn(0.5, 2.3, "SPEAKER_00"), SpeakerTurn(2.8, 5.1, "SPEAKER_01")),
    speech=(SpeechRegion(0.5, 5.1),),
    num_speakers=2,
    duration=6.0,
    inference_seconds=0.6,
)


def test_diarization_json_has_exactly_the_previous_keys():
    body = diarization_json(RESULT)
    assert body == {
        "segments": [
            {"start": 0.5, "end": 2.3, "speaker": "SPEAKER_00"},
            {"start": 2.8, "end": 5.1, "speaker": "SPEAKER_01"},
        ],
        "num_speakers": 2,
    }


def test_vad_json():
    assert vad_json(RESULT) == {"speech_segments": [{"start": 0.5, "end": 5.1}]}


def test_rttm_lines_and_uri():
    uri = rttm_uri("uploads/my meeting (1).wav")
    assert uri == "my_meeting_1"
    lines = to_rttm(RESULT, uri).splitlines()
    assert lines[0] == "SPEAKER my_meeting_1 1 0.500 1.800 <NA> <NA> SPEAKER_00 <NA> <NA>"
    assert len(lines) == 2
    assert rttm_uri("...") == "audio"


def test_real_time_factor():
    assert RESULT.real_time_factor == pytest.approx(0.1)

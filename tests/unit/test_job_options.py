"""Speaker options are validated once, where they are built."""

import pytest

from consumer.errors import InvalidRequestError, InvalidSpeakerOptionsError
from consumer.options import JobOptions, Task, parse_options


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_speakers": 0},
        {"num_speakers": -2},
        {"num_speakers": 2.5},
        {"num_speakers": True},
        {"num_speakers": 101},
        {"min_speakers": 3, "max_speakers": 2},
        {"num_speakers": 2, "min_speakers": 1},
        {"tasks": frozenset()},
    ],
)
def test_invalid_combinations_are_refused(kwargs):
    with pytest.raises(InvalidSpeakerOptionsError) as caught:
        JobOptions(**kwargs)
    assert caught.value.code == "invalid_speaker_options"
    assert caught.value.http_status == 400


def test_valid_options_and_vad_only_jobs():
    assert JobOptions(min_speakers=2, max_speakers=2).diarize
    assert not JobOptions(tasks=frozenset({Task.VAD})).diarize


def _voiceprint(value: float) -> dict:
    return {
        "type": "diarization-voiceprint",
        "version": 1,
        "embedding_model": "ab" * 32,
        "speech_seconds": 5.0,
        "embedding": [value, 1.0, 0.5],
    }


def test_objects_named_in_options_are_bucket_and_key_and_a_transcript_asks_for_exclusive_turns():
    options = parse_options({"transcript_object": {"bucket": "audio", "key": "t.json"}, "return_embeddings": "yes"})
    assert options.exclusive and options.return_embeddings
    assert options.to_dict()["transcript_object"] == {"bucket": "audio", "key": "t.json"}
    assert options.to_dict()["return_embeddings"] is True
    for bad in ({"bucket": "audio"}, {"bucket": "audio", "key": ""}, "audio/t.json", {"bucket": 1, "key": "k"}):
        with pytest.raises(InvalidRequestError):
            parse_options({"voiceprints_object": bad})


def test_voiceprints_inline_and_as_an_object_are_exclusive():
    with pytest.raises(InvalidRequestError):
        parse_options({"voiceprints": {"ada": _voiceprint(1.0)}, "voiceprints_object": {"bucket": "a", "key": "k"}})


def test_results_with_other_voiceprints_have_other_fingerprints_but_echo_no_embeddings():
    one = parse_options({"voiceprints": {"ada": _voiceprint(1.0)}})
    other = parse_options({"voiceprints": {"ada": _voiceprint(2.0)}})
    assert one.to_dict() == other.to_dict() == JobOptions().to_dict()
    assert one.fingerprint() != other.fingerprint() != JobOptions().fingerprint()

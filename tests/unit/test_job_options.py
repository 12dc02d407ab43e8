"""Speaker options are validated once, where they are built."""

import pytest

from consumer.errors import InvalidSpeakerOptionsError
from consumer.options import JobOptions, Task


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

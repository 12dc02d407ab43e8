"""Turn confidence means something: doubtful turns are the wrong ones, on conversations with known turns."""

from __future__ import annotations

import pytest
import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline

from consumer.options import JobOptions
from tests.support.conversation import conversation
from tests.support.judged_turns import right_shares

pytestmark = pytest.mark.model


def test_turns_under_half_confidence_are_the_wrong_ones(engine):
    judged = []
    for voices in (2, 3, 4, 5):
        talk = conversation(voices, 120, seed=100)
        samples, rate = sf.read(str(talk.wav), dtype="float32")
        result = engine.run(samples, rate, JobOptions())
        assert all(t.confidence is not None and 0.0 <= t.confidence <= 1.0 for t in result.turns)
        reference = Annotation()
        for i, turn in enumerate(talk.turns):
            reference[Segment(turn.start, turn.end), i] = turn.speaker
        judged += right_shares(result.turns, reference, Timeline([Segment(0, result.duration)]))
    low = [share < 0.5 for turn, share in judged if turn.confidence < 0.5]
    high = [share < 0.5 for turn, share in judged if turn.confidence >= 0.5]
    print(f"wrong: {sum(low)}/{len(low)} turns under 0.5, {sum(high)}/{len(high)} at 0.5 or more")
    assert len(low) >= 5 and len(high) >= 40
    assert sum(low) / len(low) >= 0.5
    assert sum(high) / len(high) <= 0.05

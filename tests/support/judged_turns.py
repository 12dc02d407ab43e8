"""Whether each output turn is right: the share of it spoken by the reference speaker it maps to.

Output speakers are mapped to reference speakers by pyannote's optimal mapping (the one
DER uses); a turn is *wrong* when less than half of it is speech of its mapped reference
speaker (the rest being another speaker, or no speech). Used by the confidence test and
``bench/confidence.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from consumer.engine import SpeakerTurn


def as_annotation(turns: Iterable[SpeakerTurn]) -> Annotation:
    annotation = Annotation()
    for i, turn in enumerate(turns):
        annotation[Segment(turn.start, turn.end), i] = turn.speaker
    return annotation


def right_shares(
    turns: tuple[SpeakerTurn, ...], reference: Annotation, uem: Timeline
) -> list[tuple[SpeakerTurn, float]]:
    """Each turn inside ``uem`` with the share of it (within ``uem``) that its mapped reference speaker speaks."""
    mapping = DiarizationErrorRate(collar=0.0, skip_overlap=False).optimal_mapping(
        reference.crop(uem), as_annotation(turns).crop(uem)
    )
    judged = []
    for turn in turns:
        inside = Timeline([Segment(turn.start, turn.end)]).crop(uem)
        duration = inside.duration()
        if duration <= 0:
            continue
        covered = 0.0
        if turn.speaker in mapping:
            speech = reference.label_timeline(mapping[turn.speaker]).support()
            covered = sum((a & b).duration for a in inside for b in speech if a.intersects(b))
        judged.append((turn, covered / duration))
    return judged

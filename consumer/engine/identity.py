"""Known speakers on the engine's results: enrolment (``make_voiceprint``) and matching (``identify``).

Matching compares each output speaker's centroid with every voiceprint by cosine similarity
and names a speaker only on a mutual best match that is at least ``MATCH_THRESHOLD`` and
beats the speaker's runner-up voiceprint by ``MATCH_MARGIN``; so one name is never given
twice (an over-split speaker keeps its second half anonymous), and a voice nobody enrolled
keeps its ``SPEAKER_xx`` label. Voiceprints never change the number of speakers: they only
name what the clustering found. The documents themselves are ``consumer.voiceprints``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from consumer.engine import EngineResult
from consumer.engine.confidence import cosine
from consumer.errors import VoiceprintModelMismatchError, VoiceprintSpeakersError, VoiceprintTooShortError
from consumer.voiceprints import KnownSpeakers, Voiceprint

# enrolment: this much speech of one speaker, from at most this much audio
MIN_SPEECH_SECONDS = 3.0
MAX_ENROLMENT_SECONDS = 60.0
# the enrolled speaker's share of all speaker time in the clip (an over-split voice, or a
# little crosstalk, is fine; a dialogue is not)
DOMINANT_SHARE = 0.8
# cosine similarity of a speaker centroid to a voiceprint: chosen on generated voices and
# the AMI train split's recurring speakers (bench/voiceprints.py, docs/known-speakers.md)
MATCH_THRESHOLD = 0.6
MATCH_MARGIN = 0.1


def check_model(known: KnownSpeakers, embedding_model: str) -> None:
    """Refuse voiceprints from another embedding model (``VoiceprintModelMismatchError``)."""
    for label, voiceprint in known:
        if voiceprint.embedding_model != embedding_model:
            raise VoiceprintModelMismatchError(
                f"voiceprint {label!r} was made with embedding model {voiceprint.embedding_model[:12]}..., "
                f"this service runs {embedding_model[:12] or '(none)'}...: enrol the speaker again here"
            )


def make_voiceprint(result: EngineResult, embedding_model: str, model: str = "") -> Voiceprint:
    """The voiceprint of the one speaker of an enrolment clip's diarization.

    Raises ``VoiceprintTooShortError`` under ``MIN_SPEECH_SECONDS`` of that speaker's
    speech, ``VoiceprintSpeakersError`` when no speaker has ``DOMINANT_SHARE`` of it all.
    """
    talk: dict[str, float] = {}
    for turn in result.turns:
        talk[turn.speaker] = talk.get(turn.speaker, 0.0) + turn.end - turn.start
    if not talk or max(talk.values()) < MIN_SPEECH_SECONDS:
        found = max(talk.values(), default=0.0)
        raise VoiceprintTooShortError(
            f"the clip holds {found:.1f} s of one speaker's speech; a voiceprint needs {MIN_SPEECH_SECONDS:g} s"
        )
    speaker = max(talk, key=talk.__getitem__)
    share = talk[speaker] / sum(talk.values())
    if share < DOMINANT_SHARE:
        raise VoiceprintSpeakersError(
            f"the clip holds {len(talk)} speakers and the main one has only {share:.0%} of the speech; "
            "enrol one speaker per clip"
        )
    centroid = result.centroids.get(speaker)
    if centroid is None or not np.isfinite(centroid).all() or not centroid.any():
        raise VoiceprintTooShortError("no speaker embedding could be computed from this clip")
    embedding = tuple(round(float(x), 6) for x in centroid)
    return Voiceprint(embedding, embedding_model, talk[speaker], model)


def identify(
    result: EngineResult, known: KnownSpeakers, threshold: float = MATCH_THRESHOLD, margin: float = MATCH_MARGIN
) -> EngineResult:
    """``result`` with matched speakers renamed (see the module docstring) and ``identified`` set."""
    speakers = [label for label, centroid in result.centroids.items() if np.isfinite(centroid).all() and centroid.any()]
    if not known or not speakers:
        return result
    names = [name for name, _ in known]
    similarity = cosine(
        np.stack([result.centroids[s] for s in speakers]), np.array([v.embedding for _, v in known])
    )  # (speakers, voiceprints)
    renames: dict[str, str] = {}
    identified: dict[str, tuple[str, float]] = {}
    for i, speaker in enumerate(speakers):
        j = int(np.argmax(similarity[i]))
        best = float(similarity[i, j])
        runner_up = float(np.partition(similarity[i], -2)[-2]) if len(names) > 1 else -1.0
        mutual = int(np.argmax(similarity[:, j])) == i
        if mutual and best >= threshold and best - runner_up >= margin:
            renames[speaker] = names[j]
            identified[names[j]] = (speaker, round(best, 4))
    turns = tuple(replace(t, speaker=renames.get(t.speaker, t.speaker)) for t in result.turns)
    centroids = {renames.get(label, label): c for label, c in result.centroids.items()}
    return replace(result, turns=turns, centroids=centroids, identified=identified)

"""Known speakers: voiceprints, how they are made, read, and matched against a job's speakers.

A voiceprint is a small versioned JSON document that the service hands out and never
stores: the speaker centroid of an enrolment clip (``make_voiceprint``), the digest of the
embedding model's weights that made it, and the seconds of speech it was made from.
Matching (``identify``) compares each output speaker's centroid with every voiceprint by
cosine similarity and names a speaker only on a mutual best match that is at least
``MATCH_THRESHOLD`` and beats the speaker's runner-up voiceprint by ``MATCH_MARGIN``; so
one name is never given twice (an over-split speaker keeps its second half anonymous),
and a voice nobody enrolled keeps its ``SPEAKER_xx`` label. Voiceprints never change the
number of speakers: they only name what the clustering found.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from consumer.engine import EngineResult
from consumer.engine.confidence import cosine
from consumer.errors import (
    InvalidVoiceprintError,
    TooManyVoiceprintsError,
    VoiceprintModelMismatchError,
    VoiceprintSpeakersError,
    VoiceprintTooShortError,
)

VERSION = 1
KIND = "diarization-voiceprint"
MAX_VOICEPRINTS = 50
MAX_LABEL_LENGTH = 64
MAX_DOCUMENT_BYTES = 1024 * 1024  # label -> voiceprint, as JSON: 50 voiceprints of a few KiB each
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
_ANONYMOUS = re.compile(r"^SPEAKER_[0-9]+$")
_MAX_DIMENSION = 4096


@dataclass(frozen=True, slots=True)
class Voiceprint:
    """One enrolled voice: an embedding from ``embedding_model`` (digest of its weights)."""

    embedding: tuple[float, ...]
    embedding_model: str
    speech_seconds: float
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The voiceprint document (``schemas/voiceprint.json``)."""
        return {
            "type": KIND,
            "version": VERSION,
            "model": self.model,
            "embedding_model": self.embedding_model,
            "speech_seconds": round(self.speech_seconds, 3),
            "dimension": len(self.embedding),
            "embedding": list(self.embedding),
        }

    @property
    def digest(self) -> str:
        """sha256 of the canonical document: what a result computed with it depends on."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


KnownSpeakers = tuple[tuple[str, Voiceprint], ...]
"""Voiceprints by label, in label order (hashable, for ``JobOptions``)."""


def parse_known_speakers(raw: object) -> KnownSpeakers:
    """Voiceprints from a JSON object label -> voiceprint document (or its JSON text).

    Raises ``InvalidVoiceprintError`` for anything malformed (the message names the label),
    ``TooManyVoiceprintsError`` past ``MAX_VOICEPRINTS``.
    """
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidVoiceprintError("voiceprints must be a JSON object: label -> voiceprint") from None
    if not isinstance(raw, Mapping):
        raise InvalidVoiceprintError("voiceprints must be a JSON object: label -> voiceprint")
    if len(raw) > MAX_VOICEPRINTS:  # before parsing thousands of them
        raise TooManyVoiceprintsError(f"at most {MAX_VOICEPRINTS} voiceprints per job, got {len(raw)}")
    return known_speakers([(label, parse_voiceprint(document, str(label))) for label, document in raw.items()])


def known_speakers(pairs: Sequence[tuple[str, Voiceprint]]) -> KnownSpeakers:
    """``KnownSpeakers`` from (name, voiceprint) pairs; names checked (``check_label``) and unique."""
    if len(pairs) > MAX_VOICEPRINTS:
        raise TooManyVoiceprintsError(f"at most {MAX_VOICEPRINTS} voiceprints per job, got {len(pairs)}")
    for label, _ in pairs:
        check_label(label)
    if len({label for label, _ in pairs}) != len(pairs):
        raise InvalidVoiceprintError("each known speaker's name must be given once")
    return tuple(sorted(pairs, key=lambda pair: pair[0]))


def check_label(label: object) -> None:
    """A usable speaker name: 1-64 printable characters, not an anonymous ``SPEAKER_nn`` label."""
    if (
        not isinstance(label, str)
        or not 0 < len(label) <= MAX_LABEL_LENGTH
        or not label.isprintable()
        or label != label.strip()
        or _ANONYMOUS.fullmatch(label)
    ):
        raise InvalidVoiceprintError(
            f"speaker name {str(label)[:80]!r} must be 1-{MAX_LABEL_LENGTH} printable characters without "
            "leading or trailing spaces, and not SPEAKER_<digits> (the label of unnamed speakers)"
        )


def parse_voiceprint(document: object, label: str = "") -> Voiceprint:
    """A ``Voiceprint`` from its document; ``InvalidVoiceprintError`` when it is not one."""
    where = f"voiceprint {label!r}" if label else "voiceprint"
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):
            raise InvalidVoiceprintError(f"{where} is not JSON") from None
    if not isinstance(document, Mapping) or document.get("type") != KIND:
        raise InvalidVoiceprintError(f"{where} is not a voiceprint document (type {KIND!r})")
    if document.get("version") != VERSION:
        raise InvalidVoiceprintError(f"{where} has version {document.get('version')!r}; this service reads {VERSION}")
    embedding = document.get("embedding")
    digest = document.get("embedding_model")
    seconds = document.get("speech_seconds")
    if (
        not isinstance(embedding, list)
        or not 0 < len(embedding) <= _MAX_DIMENSION
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in embedding)
        or not any(embedding)
    ):
        raise InvalidVoiceprintError(f"{where}: embedding must be a non-zero list of finite numbers")
    if document.get("dimension", len(embedding)) != len(embedding):
        raise InvalidVoiceprintError(f"{where}: dimension does not match the embedding's length")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise InvalidVoiceprintError(f"{where}: embedding_model must be a sha256 digest")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 1e6:
        raise InvalidVoiceprintError(f"{where}: speech_seconds must be a non-negative number")
    model = document.get("model", "")
    return Voiceprint(
        tuple(float(x) for x in embedding), digest, float(seconds), model if isinstance(model, str) else ""
    )


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

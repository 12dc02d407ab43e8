"""Known speakers as values: the voiceprint document, and how a job's known speakers are read.

A voiceprint is a small versioned JSON document that the service hands out and never
stores: the speaker centroid of an enrolment clip, the digest of the embedding model's
weights that made it, and the seconds of speech it was made from. How one is made from an
engine result, and how a result's speakers are matched against them, is
``consumer.engine.identity``; this module reads and checks documents only, so that the
options parser can take known speakers without depending on the engine.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consumer.errors import InvalidVoiceprintError, TooManyVoiceprintsError

VERSION = 1
KIND = "diarization-voiceprint"
MAX_VOICEPRINTS = 50
MAX_LABEL_LENGTH = 64
MAX_DOCUMENT_BYTES = 1024 * 1024  # label -> voiceprint, as JSON: 50 voiceprints of a few KiB each
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

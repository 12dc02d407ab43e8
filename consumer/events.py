"""What happens to a job, as plain values: requested, progressed, completed, failed.

No transport types here: ``consumer.codec`` turns these into CloudEvents and back.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from consumer.options import JobOptions

# Result event ids are uuid5 names in this namespace: the same input always gets the
# same result id, however often it is delivered.
RESULT_ID_NAMESPACE = uuid.UUID("7c0f3f4e-5d2a-4a53-9f0e-3b1f2d6c8a91")
# The object-key rule, also written as the pattern of ``key`` in schemas/audio-uploaded.json
# (a test keeps the two in step): 1-1024 characters, no control characters, no "." or ".."
# path segments (a result key derived from such a key could leave the results prefix).
_ACCEPTABLE_KEY = re.compile(r"^(?!.*(^|/)\.{1,2}(/|$))[^\x00-\x1f\x7f]{1,1024}$")


def is_acceptable_key(key: str) -> bool:
    """Whether the service takes ``key`` as an object key (see ``_ACCEPTABLE_KEY``)."""
    return _ACCEPTABLE_KEY.fullmatch(key) is not None


@dataclass(frozen=True, slots=True)
class InputRef:
    """The identity of the event that asked for a job."""

    id: str
    source: str
    type: str
    traceparent: str | None = None

    def result_id(self, kind: str = "result") -> str:
        """Deterministic id of the result (or ``kind``) event answering this input."""
        return str(uuid.uuid5(RESULT_ID_NAMESPACE, f"{self.source}\n{self.id}\n{kind}"))

    def to_dict(self) -> dict[str, str]:
        """As the ``input`` field of result events."""
        out = {"id": self.id, "source": self.source, "type": self.type}
        if self.traceparent:
            out["traceparent"] = self.traceparent
        return out


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An audio object in the store."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """As the ``object`` field of result events."""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "etag": self.etag,
            "size": self.size,
        }

    @property
    def partition_key(self) -> str:
        """Kafka key of its result events: results of one object stay in order."""
        return f"{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class ResultLocation:
    """Where the result objects of one run are stored, and what they are computed from:
    located once per run by the store (``ObjectStore.locate``).

    ``digest`` names the source version, options and model (``event_job.result_digest``);
    ``source_etag`` is the etag of the source version the run reads. A stored result is
    reused only where both match what it was written with.
    """

    bucket: str
    json_key: str
    rttm_key: str
    digest: str = ""
    source_etag: str = ""


@dataclass(frozen=True, slots=True)
class AudioJobRequested:
    """An audio object was uploaded (or named by an event) and should be diarized."""

    input: InputRef
    object: ObjectRef
    options: JobOptions = field(default_factory=JobOptions)


@dataclass(frozen=True, slots=True)
class JobProgressed:
    """A long job has done ``fraction`` of its work."""

    request: AudioJobRequested
    fraction: float
    audio_seconds: float


@dataclass(frozen=True, slots=True)
class DiarizationCompleted:
    """A job finished; ``document`` is the result as stored in ``<prefix><bucket>/<key>/<digest>.json``
    (``ResultLocation``) and sent, fitted to its door, in the completed event."""

    request: AudioJobRequested
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobFailed:
    """A job cannot succeed; retrying the same input would fail the same way."""

    input: InputRef
    object: ObjectRef | None
    code: str
    message: str


JobOutcome = DiarizationCompleted | JobFailed

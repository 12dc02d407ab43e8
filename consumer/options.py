"""Job options: what one job asks for, and the one parser every door uses to read them.

The sync API's form fields, an upload's S3 object metadata (``x-amz-meta-num-speakers``...)
and an event's ``options`` object all go through ``parse_options``, so a spelling accepted
(or refused) on one door is accepted (or refused) on every door. The true/false spellings
are shared with the settings (``consumer.config``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from consumer.config import parse_flag
from consumer.errors import InvalidRequestError, InvalidSpeakerOptionsError
from consumer.voiceprints import KnownSpeakers, parse_known_speakers

MAX_SPEAKERS = 100
SPEAKER_COUNTS = ("num_speakers", "min_speakers", "max_speakers")
OPTION_NAMES = (*SPEAKER_COUNTS, "exclusive", "tasks", "audio_stream", "return_embeddings", "voiceprints")
# options only events take: other objects, in a bucket the service reads, that the job uses
OBJECT_OPTIONS = ("voiceprints_object", "transcript_object")
MAX_AUDIO_STREAM = 63  # an index among a file's audio streams; more is not a real file
_MAX_DIGITS = 6  # int() of thousands of digits is slow, then refused anyway


class Task(StrEnum):
    """What a job asks for. Diarization always comes with speech regions, at no extra cost."""

    DIARIZATION = "diarization"
    VAD = "vad"


ALL_TASKS = frozenset({Task.DIARIZATION, Task.VAD})


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object an event's options name (a transcript, voiceprints), fetched by the job."""

    bucket: str
    key: str

    def to_dict(self) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self.key}


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Speaker-count hints and output options of one job; invalid combinations raise at construction."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    exclusive: bool = False
    tasks: frozenset[Task] = ALL_TASKS
    audio_stream: int = 0
    return_embeddings: bool = False
    voiceprints: KnownSpeakers = ()
    voiceprints_object: StoredObject | None = None  # read into ``voiceprints`` by the job
    transcript_object: StoredObject | None = None

    def __post_init__(self) -> None:
        for name in SPEAKER_COUNTS:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SPEAKERS
            ):
                raise InvalidSpeakerOptionsError(f"{name} must be an integer from 1 to {MAX_SPEAKERS}, got {value!r}")
        if self.num_speakers is not None and (self.min_speakers is not None or self.max_speakers is not None):
            raise InvalidSpeakerOptionsError("give either num_speakers or min_speakers/max_speakers, not both")
        if self.min_speakers is not None and self.max_speakers is not None and self.min_speakers > self.max_speakers:
            raise InvalidSpeakerOptionsError(
                f"min_speakers ({self.min_speakers}) is greater than max_speakers ({self.max_speakers})"
            )
        if not self.tasks:
            raise InvalidSpeakerOptionsError("at least one task is required")
        if (
            isinstance(self.audio_stream, bool)
            or not isinstance(self.audio_stream, int)
            or not 0 <= self.audio_stream <= MAX_AUDIO_STREAM
        ):
            raise InvalidRequestError(
                f"audio_stream must be an integer from 0 to {MAX_AUDIO_STREAM}, got {self.audio_stream!r}"
            )

    @property
    def diarize(self) -> bool:
        """Whether the job needs speaker turns (and therefore speaker embeddings)."""
        return Task.DIARIZATION in self.tasks

    def to_dict(self) -> dict[str, object]:
        """The options as events and result documents write them: unset counts left out, tasks sorted.

        ``audio_stream`` appears when it is not the first stream, so that the documents and
        result digests of jobs that do not use it stay as they were.
        """
        out: dict[str, object] = {
            name: getattr(self, name) for name in SPEAKER_COUNTS if getattr(self, name) is not None
        }
        out["exclusive"] = self.exclusive
        out["tasks"] = sorted(task.value for task in self.tasks)
        if self.audio_stream:
            out["audio_stream"] = self.audio_stream
        if self.return_embeddings:
            out["return_embeddings"] = True
        for name in OBJECT_OPTIONS:
            stored = getattr(self, name)
            if stored is not None:
                out[name] = stored.to_dict()
        return out

    def fingerprint(self) -> dict[str, object]:
        """``to_dict()`` and what it leaves out that changes a result: the voiceprints' digests."""
        out = self.to_dict()
        if self.voiceprints:
            out["voiceprints"] = {label: voiceprint.digest for label, voiceprint in self.voiceprints}
        return out


def parse_options(fields: Mapping[str, object], tasks: frozenset[Task] | None = None) -> JobOptions:
    """``JobOptions`` from text fields (a form, object metadata) or JSON values (event data).

    ``fields`` uses the option names (``num_speakers``, ``exclusive``, ``tasks``...); others
    are ignored. Text and JSON are read by one rule: a speaker count or ``audio_stream``
    (which audio stream of the file, from 0) is an integer or a string of at most six ASCII digits, ``exclusive`` a boolean or a true/false spelling,
    ``tasks`` a list or a comma-separated string of ``diarization``/``vad``. ``tasks``
    given as an argument (a door that fixes them) overrides the field. Diarization
    implies VAD. Raises ``InvalidSpeakerOptionsError`` for speaker counts and
    ``InvalidRequestError`` for the other options.

    ``return_embeddings`` is a flag; ``voiceprints`` a JSON object label -> voiceprint (or
    its text; ``consumer.voiceprints``). Events may also name objects in a readable
    bucket: ``voiceprints_object`` (such a JSON object) and ``transcript_object`` (a
    transcript to attribute, which asks for exclusive turns).
    """
    counts = {name: _count(name, fields.get(name)) for name in SPEAKER_COUNTS}
    raw_voiceprints = fields.get("voiceprints")
    if raw_voiceprints not in (None, "") and fields.get("voiceprints_object") is not None:
        raise InvalidRequestError("give voiceprints or voiceprints_object, not both")
    transcript_object = _stored("transcript_object", fields.get("transcript_object"))
    return JobOptions(
        **counts,
        exclusive=_flag("exclusive", fields.get("exclusive")) or transcript_object is not None,
        tasks=tasks if tasks is not None else _tasks(fields.get("tasks")),
        audio_stream=_index("audio_stream", fields.get("audio_stream")),
        return_embeddings=_flag("return_embeddings", fields.get("return_embeddings")),
        voiceprints=() if raw_voiceprints in (None, "") else parse_known_speakers(raw_voiceprints),
        voiceprints_object=_stored("voiceprints_object", fields.get("voiceprints_object")),
        transcript_object=transcript_object,
    )


def _stored(name: str, raw: object) -> StoredObject | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, Mapping)
        or set(raw) != {"bucket", "key"}
        or not all(isinstance(raw[k], str) and raw[k] for k in ("bucket", "key"))
    ):
        raise InvalidRequestError(f"{name} must be an object {{bucket, key}}")
    return StoredObject(raw["bucket"], raw["key"])


def _count(name: str, raw: object) -> int | None:
    try:
        return _integer(raw)
    except ValueError:
        raise InvalidSpeakerOptionsError(
            f"{name} must be an integer from 1 to {MAX_SPEAKERS}, got {str(raw)[:40]!r}"
        ) from None


def _index(name: str, raw: object) -> int:
    try:
        value = _integer(raw)
    except ValueError:
        raise InvalidRequestError(
            f"{name} must be an integer from 0 to {MAX_AUDIO_STREAM}, got {str(raw)[:40]!r}"
        ) from None
    return 0 if value is None else value


def _integer(raw: object) -> int | None:
    """An integer (JobOptions checks its range), None when absent or empty; ``ValueError`` for anything else."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
            return int(text)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise ValueError(raw)


def _flag(name: str, raw: object) -> bool:
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str):
        try:
            value = parse_flag(raw)
        except ValueError:
            pass
        else:
            return bool(value)
    raise InvalidRequestError(f"{name} must be true or false, got {str(raw)[:40]!r}")


def _tasks(raw: object) -> frozenset[Task]:
    if raw is None:
        return ALL_TASKS
    names = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InvalidRequestError(f"tasks must be a list of {', '.join(t.value for t in Task)}")
    try:
        tasks = frozenset(Task(n.strip()) for n in names if n.strip())
    except ValueError:
        raise InvalidRequestError(
            f"tasks must be among {', '.join(t.value for t in Task)}, got {str(raw)[:80]!r}"
        ) from None
    if Task.DIARIZATION in tasks:
        tasks |= {Task.VAD}  # speech regions come with diarization at no cost
    return tasks

"""The engine seam: what a diarization engine takes and returns, independent of pyannote.

``PyannoteEngine`` (in ``consumer.engine.pyannote_engine``) is the real implementation;
importing this package never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from consumer.errors import ServiceError

if TYPE_CHECKING:  # consumer.options reads voiceprints, which read engine results
    from consumer.options import JobOptions


@runtime_checkable
class Samples(Protocol):
    """Mono float32 audio an engine reads a window at a time (``consumer.audio.SampleFile`` is one)."""

    sample_rate: int

    def __len__(self) -> int: ...

    @property
    def duration(self) -> float:
        """Length in seconds."""
        ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start`` to ``stop``, clipped to the audio, as a new float32 array."""
        ...

    def padded(self, start: int, length: int) -> np.ndarray:
        """``length`` samples from ``start``, zeros where they pass the end."""
        ...


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One speaker speaking from ``start`` to ``end`` (seconds).

    ``confidence`` in [0, 1] says how clearly the turn's voice is its speaker's
    (``consumer.engine.confidence``); ``None`` where the engine gives none.
    """

    start: float
    end: float
    speaker: str
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class SpeechRegion:
    """A stretch of speech, whoever speaks."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class StageSeconds:
    """Wall-clock seconds of one run's stages; 0 for a stage the run did not have.

    ``segmentation`` includes speaker counting; ``clustering`` includes the reconstruction
    of speaker turns from the clusters; ``confidence`` is the scoring of every turn
    (``consumer.engine.confidence``). A VAD-only run has segmentation only. ``decode`` is
    set by the analyzer, which decodes the audio before the engine runs.
    """

    decode: float = 0.0
    segmentation: float = 0.0
    embeddings: float = 0.0
    clustering: float = 0.0
    confidence: float = 0.0

    def rounded(self) -> dict[str, float]:
        """The stages as a plain dict, in milliseconds' precision (for logs and metadata)."""
        return {
            "decode": round(self.decode, 3),
            "segmentation": round(self.segmentation, 3),
            "embeddings": round(self.embeddings, 3),
            "clustering": round(self.clustering, 3),
            "confidence": round(self.confidence, 3),
        }


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What one engine run found. ``turns`` is empty for a VAD-only job.

    ``centroids`` holds one embedding per speaker of ``turns`` (the clustering's centroid,
    from the engine's ``embedding_model``), by speaker label; empty for a VAD-only job.
    ``identified`` maps the speakers named after voiceprints to the anonymous label they
    had and their similarity (``consumer.engine.identity.identify``); the engine leaves it empty.
    """

    turns: tuple[SpeakerTurn, ...]
    speech: tuple[SpeechRegion, ...]
    num_speakers: int
    duration: float
    inference_seconds: float
    stages: StageSeconds = StageSeconds()
    centroids: Mapping[str, np.ndarray] = field(default_factory=dict)
    identified: Mapping[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        """Processing time divided by audio duration (lower is faster)."""
        return self.inference_seconds / self.duration if self.duration else 0.0


ProgressCallback = Callable[[float], None]
"""Called from the inference thread with the fraction done, in [0, 1], after every batch and at
every stage's end (with the same fraction when nothing new is done): the job's heartbeat too."""


class Engine(Protocol):
    """A diarization engine: one model, loaded once, running one job at a time.

    ``load()`` blocks until the model is loaded and warmed up, then ``ready`` is true; if
    it fails it raises, and ``error`` keeps the failure for the readiness probe.
    ``run()`` may be called from several threads; implementations serialise inference on
    one model, so concurrent calls queue. ``run()`` raises ``ModelNotReadyError`` before
    ``load()`` finished and ``InferenceError`` when the model fails on valid audio.
    """

    @property
    def ready(self) -> bool:
        """Whether ``run()`` can be called now: loaded, warm, and not broken. Never blocks."""
        ...

    @property
    def device(self) -> str:
        """The device type the model runs on (``cpu``, ``cuda``); ``cpu`` before ``load()``. Never blocks."""
        ...

    @property
    def error(self) -> ServiceError | None:
        """Why the engine is not ready: the failure of ``load()`` (``ModelLoadError``), or of the
        engine itself (``EngineBrokenError``); ``None`` while it loads or once it is ready."""
        ...

    @property
    def embedding_model(self) -> str:
        """Digest of the speaker-embedding model's weights (set once loaded): embeddings and
        voiceprints are comparable only between runs with the same one."""
        ...

    def load(self) -> None:
        """Load the model onto its device and warm it up; called once, at start-up, from one thread.

        Blocks for as long as that takes (seconds to a minute). Sets ``ready`` (and
        ``embedding_model``, ``device``) on success; raises ``ModelLoadError`` otherwise, also
        kept in ``error``.
        """
        ...

    def run(
        self,
        samples: np.ndarray | Samples,
        sample_rate: int,
        options: JobOptions,
        progress: ProgressCallback | None = None,
    ) -> EngineResult:
        """Diarize (or, for a VAD-only job, only detect speech in) mono float32 ``samples``, in
        memory or read a window at a time (``Samples``: the decoder's ``SampleFile``).

        Called from any thread once ``ready``; blocks for the whole job, queued behind the
        job in progress. ``progress`` is called from the inference thread (see
        ``ProgressCallback``). Returns everything the run found, stages' timings and speaker
        centroids included (nothing is left on the engine for a later call to read). Raises
        ``ModelNotReadyError`` before ``load()`` finished, ``InferenceError`` when the model
        fails on this audio, and ``EngineBrokenError`` once failures on several different
        inputs in a row show the engine, not the inputs, at fault.
        """
        ...

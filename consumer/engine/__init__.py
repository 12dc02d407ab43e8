"""The engine seam: what a diarization engine takes and returns, independent of pyannote.

``PyannoteEngine`` (in ``consumer.engine.pyannote_engine``) is the real implementation;
importing this package never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from consumer.errors import ServiceError
from consumer.options import JobOptions


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One speaker speaking from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True, slots=True)
class SpeechRegion:
    """A stretch of speech, whoever speaks."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class StageSeconds:
    """Wall-clock seconds of one run's stages; 0 for a stage the run did not have.

    ``segmentation`` includes speaker counting; ``clustering`` includes the reconstruction
    of speaker turns from the clusters. A VAD-only run has segmentation only.
    """

    segmentation: float = 0.0
    embeddings: float = 0.0
    clustering: float = 0.0

    def rounded(self) -> dict[str, float]:
        """The stages as a plain dict, in milliseconds' precision (for logs and metadata)."""
        return {
            "segmentation": round(self.segmentation, 3),
            "embeddings": round(self.embeddings, 3),
            "clustering": round(self.clustering, 3),
        }


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What one engine run found. ``turns`` is empty for a VAD-only job."""

    turns: tuple[SpeakerTurn, ...]
    speech: tuple[SpeechRegion, ...]
    num_speakers: int
    duration: float
    inference_seconds: float
    stages: StageSeconds = StageSeconds()

    @property
    def real_time_factor(self) -> float:
        """Processing time divided by audio duration (lower is faster)."""
        return self.inference_seconds / self.duration if self.duration else 0.0


ProgressCallback = Callable[[float], None]
"""Called from the inference thread with the fraction done, in [0, 1]."""


class Engine(Protocol):
    """A diarization engine.

    ``load()`` blocks until the model is loaded and warmed up, then ``ready`` is true; if
    it fails it raises, and ``error`` keeps the failure for the readiness probe.
    ``run()`` may be called from several threads; implementations serialise inference on
    one model, so concurrent calls queue. ``run()`` raises ``ModelNotReadyError`` before
    ``load()`` finished and ``InferenceError`` when the model fails on valid audio.
    """

    @property
    def ready(self) -> bool: ...

    @property
    def device(self) -> str: ...

    @property
    def error(self) -> ServiceError | None: ...

    def load(self) -> None: ...

    def run(
        self,
        samples: np.ndarray,
        sample_rate: int,
        options: JobOptions,
        progress: ProgressCallback | None = None,
    ) -> EngineResult: ...

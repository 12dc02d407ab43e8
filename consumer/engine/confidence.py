"""How sure the engine is of each speaker turn: a number in [0, 1].

Meaning: the turn's own audio (its middle ``TURN_SECONDS`` at most) is embedded with the
pipeline's embedding model, and compared (cosine similarity) with every speaker's
centroid. The turn's *margin* is its similarity to its own speaker's centroid minus its
similarity to the closest other speaker's centroid; with a single speaker, the
similarity itself. Confidence is that margin over ``FULL_MARGIN``, clipped to [0, 1]:
0 means the turn sounds at least as much like another speaker as like its own, or is
too short to embed; 1 means it is closer to its own speaker by ``FULL_MARGIN`` or more.
Short turns and turns at overlaps embed poorly, so they score low, and they are where
most diarization errors are (bench/confidence.py, docs/confidence.md).

Pure numpy; the engine computes the embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A margin of this much cosine similarity or more is full confidence (1.0); chosen on the
# AMI train split and generated conversations (bench/confidence.py).
FULL_MARGIN = 0.3
# the longest stretch of a turn that is embedded (its middle): enough to recognise a voice
TURN_SECONDS = 2.0


def turn_confidences(embeddings: np.ndarray, speakers: Sequence[int], centroids: np.ndarray) -> list[float]:
    """The confidence of each turn (see the module docstring), rounded to 3 decimals.

    ``embeddings``: (turns, dimension), a NaN row for a turn too short to embed;
    ``speakers``: each turn's speaker, a row of ``centroids`` (speakers, dimension), in
    which an all-zero row is a speaker without a centroid.
    """
    if not len(speakers):
        return []
    usable = np.linalg.norm(centroids, axis=1) > 0
    similarity = cosine(embeddings, centroids)  # (turns, speakers)
    scores = []
    for row, speaker in zip(similarity, speakers, strict=True):
        own = row[speaker]
        others = row[usable & (np.arange(len(row)) != speaker)]
        margin = own - others.max() if len(others) else own
        scores.append(0.0 if not usable[speaker] or not np.isfinite(margin) else float(margin))
    return [round(float(np.clip(m / FULL_MARGIN, 0.0, 1.0)), 3) for m in scores]


def middle(start: float, end: float, seconds: float = TURN_SECONDS) -> tuple[float, float]:
    """The middle ``seconds`` of ``[start, end]`` (all of it when shorter)."""
    if end - start <= seconds:
        return start, end
    centre = (start + end) / 2
    return centre - seconds / 2, centre + seconds / 2


def cosine(vectors: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``vectors`` to every row of ``others``; NaN rows stay NaN."""
    a = np.asarray(vectors, dtype=np.float64)
    b = np.asarray(others, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return a @ b.T

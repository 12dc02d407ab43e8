"""Clustering every embedding of a long file in windows (``consumer.engine.clustering``).

Synthetic embeddings: speakers are random directions of a 192-dimensional space, each
embedding its speaker's direction plus noise, at the spread CAM++ shows for one voice
(cosine about 0.85 between two embeddings of one voice). The real-audio evidence is in tests/model/test_long_files.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from pyannote.audio.pipelines.clustering import AgglomerativeClustering

from consumer.engine.clustering import cluster_in_windows

THRESHOLD, MIN_CLUSTER_SIZE, WINDOW = 0.58, 12, 4000  # the offline bundle's and the pipeline's


def _voices(count: int, rng: np.random.Generator) -> np.ndarray:
    directions = rng.standard_normal((count, 192))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _speak(voice: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return voice + rng.standard_normal((count, len(voice))) * 0.03


def _agree(labels: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """For each true speaker, the label most of their embeddings got."""
    return {int(t): int(np.bincount(labels[truth == t]).argmax()) for t in np.unique(truth)}


def _long_meeting(rng: np.random.Generator, turns: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Four voices taking turns of 30-80 embeddings; a fifth speaks 3 turns of 20, spread out."""
    voices = _voices(5, rng)
    pieces, truth = [], []
    guest_at = {turns // 4, turns // 2, 3 * turns // 4}
    for turn in range(turns):
        speaker = 4 if turn in guest_at else turn % 4
        size = 20 if speaker == 4 else int(rng.integers(30, 80))
        pieces.append(_speak(voices[speaker], size, rng))
        truth += [speaker] * size
    return np.vstack(pieces), np.asarray(truth)


def test_a_short_speaker_of_a_long_file_keeps_their_own_cluster():
    """60 embeddings of a fifth voice among 22,000: each window holds at most 20 of them (under
    min_cluster_size), together they are 60. Every speaker gets one cluster of their own."""
    rng = np.random.default_rng(0)
    embeddings, truth = _long_meeting(rng)
    assert len(embeddings) > 4 * WINDOW
    labels = cluster_in_windows(embeddings, threshold=THRESHOLD, min_cluster_size=MIN_CLUSTER_SIZE, window=WINDOW)
    mapping = _agree(labels, truth)
    assert len(set(mapping.values())) == 5 == len(np.unique(labels)), mapping
    assert np.mean([mapping[t] == label for t, label in zip(truth, labels, strict=True)]) > 0.99


def test_an_evenly_spaced_subset_loses_that_speaker():
    """The control: pyannote's clustering of an evenly spaced 4000 of the same embeddings (what the
    pipeline did before) leaves the fifth voice under min_cluster_size, merged into another."""
    rng = np.random.default_rng(0)
    embeddings, truth = _long_meeting(rng)
    keep = np.unique(np.linspace(0, len(embeddings) - 1, WINDOW).round().astype(int))
    clustering = AgglomerativeClustering(metric="cosine")
    clustering.instantiate({"method": "centroid", "threshold": THRESHOLD, "min_cluster_size": MIN_CLUSTER_SIZE})
    labels = clustering.cluster(embeddings[keep].copy(), min_clusters=1, max_clusters=len(keep))
    assert len(np.unique(labels)) == 4
    assert (truth[keep] == 4).sum() < MIN_CLUSTER_SIZE


def test_a_speaker_split_over_windows_is_one_cluster_and_noise_joins_a_large_one():
    rng = np.random.default_rng(1)
    voices = _voices(2, rng)
    embeddings = np.vstack([_speak(voices[i % 2], 1000, rng) for i in range(10)])
    truth = np.repeat([0, 1] * 5, 1000)
    stray = rng.standard_normal((5, 192))  # five embeddings like nobody: under min_cluster_size
    labels = cluster_in_windows(
        np.vstack([embeddings, stray]), threshold=THRESHOLD, min_cluster_size=MIN_CLUSTER_SIZE, window=3000
    )
    assert len(np.unique(labels)) == 2
    assert len(set(_agree(labels[: len(truth)], truth).values())) == 2


@pytest.mark.parametrize("wanted", [2, 3, 4])
def test_a_requested_number_of_speakers_is_met(wanted):
    """Three voices: merged into two, or split into four (as pyannote cuts its dendrogram lower)."""
    rng = np.random.default_rng(2)
    voices = _voices(3, rng)
    embeddings = np.vstack([_speak(voices[i % 3], 900, rng) for i in range(9)])
    labels = cluster_in_windows(
        embeddings, threshold=THRESHOLD, min_cluster_size=MIN_CLUSTER_SIZE, window=2000, num_clusters=wanted
    )
    assert len(np.unique(labels)) == wanted


def test_bounds_apply_when_the_threshold_gives_a_number_outside_them():
    rng = np.random.default_rng(3)
    voices = _voices(4, rng)
    embeddings = np.vstack([_speak(voices[i % 4], 1000, rng) for i in range(8)])
    common = dict(threshold=THRESHOLD, min_cluster_size=MIN_CLUSTER_SIZE, window=3000)
    assert len(np.unique(cluster_in_windows(embeddings, **common))) == 4
    assert len(np.unique(cluster_in_windows(embeddings, max_clusters=2, **common))) == 2
    assert len(np.unique(cluster_in_windows(embeddings, min_clusters=3, **common))) == 4

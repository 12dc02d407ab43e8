"""Turn confidence from embeddings and centroids (pure logic; the engine's use is in tests/model)."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.engine.confidence import FULL_MARGIN, middle, turn_confidences


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float64)
    return vector / np.linalg.norm(vector)


CENTROIDS = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)])


def test_a_turn_right_on_its_centroid_is_fully_confident_and_one_between_two_is_not():
    embeddings = np.stack([unit(1, 0, 0), unit(1, 1, 0), unit(1, 1, 0)])
    assert turn_confidences(embeddings, [0, 0, 1], CENTROIDS) == [1.0, 0.0, 0.0]


def test_confidence_is_the_margin_over_the_runner_up_scaled():
    embedding = unit(1.0, 0.8, 0.0)
    margin = embedding @ CENTROIDS[0] - embedding @ CENTROIDS[1]
    assert 0 < margin < FULL_MARGIN
    assert turn_confidences(embedding[None], [0], CENTROIDS) == [pytest.approx(margin / FULL_MARGIN, abs=1e-3)]
    # the other speaker's own turn would be closer to someone else: nothing to be sure of
    assert turn_confidences(embedding[None], [1], CENTROIDS) == [0.0]


def test_a_turn_too_short_to_embed_or_without_a_centroid_scores_zero():
    embeddings = np.stack([np.full(3, np.nan), unit(0, 0, 1)])
    centroids = CENTROIDS.copy()
    centroids[2] = 0.0  # a speaker the clustering gave no centroid
    assert turn_confidences(embeddings, [0, 2], centroids) == [0.0, 0.0]


def test_with_one_speaker_the_similarity_itself_counts():
    centroid = unit(1, 0, 0)[None]
    assert turn_confidences(np.stack([unit(1, 0, 0), unit(0.1, 1, 0)]), [0, 0], centroid) == [
        1.0,
        pytest.approx(0.33, abs=0.01),
    ]


def test_long_turns_are_scored_on_their_middle():
    assert middle(10.0, 12.0) == (10.0, 12.0)
    assert middle(10.0, 30.0) == (19.0, 21.0)


def test_no_turns():
    assert turn_confidences(np.zeros((0, 3)), [], CENTROIDS) == []

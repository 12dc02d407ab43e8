"""The bound on how many embeddings the clustering sees (``consumer.engine.pipeline``)."""

from __future__ import annotations

import numpy as np

from consumer.engine.pipeline import MAX_CLUSTERED_EMBEDDINGS, _at_most, evenly_spaced


def test_evenly_spaced_keeps_everything_under_the_limit():
    assert evenly_spaced(5, 10).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(10, 10).tolist() == list(range(10))


def test_evenly_spaced_spreads_over_the_whole_range():
    keep = evenly_spaced(26_000, MAX_CLUSTERED_EMBEDDINGS)
    assert len(keep) == MAX_CLUSTERED_EMBEDDINGS
    assert keep[0] == 0 and keep[-1] == 25_999
    gaps = np.diff(keep)
    assert gaps.min() >= 6 and gaps.max() <= 7  # 26,000 / 4,000 = 6.5: no stretch of time left out


def _filter(count: int):
    chosen = (np.arange(count * 3, dtype=np.float32).reshape(count, 3), np.arange(count) // 2, np.arange(count) % 2)
    return lambda *args, **kwargs: chosen


def test_the_clustering_input_is_thinned_consistently():
    chosen, chunks, speakers = _at_most(100, _filter(1_000))(None, segmentations=None)
    assert chosen.shape == (100, 3)
    # each kept embedding still names its own chunk and speaker
    rows = (chosen[:, 0] / 3).astype(int)
    assert (chunks == rows // 2).all() and (speakers == rows % 2).all()


def test_short_files_are_clustered_as_pyannote_does():
    pyannotes = _filter(100)
    assert _at_most(100, pyannotes)() is pyannotes()

"""The block-by-block bookkeeping of ``consumer.engine.pipeline`` gives pyannote's own numbers.

Random binary segmentations (runs of activity, as a powerset model gives them) and random
cluster assignments go through pyannote's ``speaker_count`` and ``reconstruct`` (the
overlapping and the exclusive diarization) and through the pipeline's ``Scan`` (packed
bits, running sums, ``discrete_diarization``): the results must be equal, element for element.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pyannote.audio.pipelines import SpeakerDiarization as Stock
from pyannote.core import SlidingWindow, SlidingWindowFeature

from consumer.engine.pipeline import Scan, discrete_diarization, keep_scores

CHUNKS = SlidingWindow(start=0.0, duration=10.0, step=1.0)
FRAMES = SlidingWindow(start=0.0, duration=0.0619375, step=0.016875)  # segmentation-3.0's receptive field
FRAMES_PER_CHUNK, SPEAKERS = 589, 3


def _segmentation(num_chunks: int, rng: np.random.Generator) -> np.ndarray:
    """(chunks, frames, speakers) 0/1 float32 with runs of activity."""
    flips = rng.random((num_chunks, FRAMES_PER_CHUNK, SPEAKERS)) < 0.02
    return (np.cumsum(flips, axis=1) % 2).astype(np.float32)


def _scan(segmentation: np.ndarray, block: int) -> Scan:
    num_chunks = len(segmentation)
    num_frames = FRAMES.closest_frame(CHUNKS.duration + (num_chunks - 1) * CHUNKS.step + 0.5 * FRAMES.duration) + 1
    scan = Scan.empty(CHUNKS, FRAMES, num_chunks, num_frames, (FRAMES_PER_CHUNK, SPEAKERS), None)
    for first in range(0, num_chunks, block):
        keep_scores(scan, first, segmentation[first : first + block])
    return scan


@pytest.mark.parametrize(("num_chunks", "block", "num_clusters"), [(1, 600, 2), (37, 10, 2), (250, 64, 5)])
def test_speaker_count_and_reconstruction_equal_pyannotes(num_chunks, block, num_clusters):
    rng = np.random.default_rng(num_chunks)
    segmentation = _segmentation(num_chunks, rng)
    scan = _scan(segmentation, block)
    assert np.array_equal(scan.segmentation(0, num_chunks), segmentation)

    stock_count = Stock.speaker_count(SlidingWindowFeature(segmentation, CHUNKS), FRAMES, warm_up=(0.0, 0.0))
    count = scan.count()
    assert np.array_equal(count.data, stock_count.data)
    assert count.data.any()

    hard_clusters = rng.integers(0, num_clusters, (num_chunks, SPEAKERS))
    hard_clusters[segmentation.sum(axis=1) == 0] = -2
    count.data = np.minimum(count.data, 3).astype(np.int8)
    overlapping, exclusive = discrete_diarization(scan, hard_clusters, count)
    pipeline = SimpleNamespace(to_diarization=Stock.to_diarization)
    stock_segmentation = SlidingWindowFeature(segmentation.copy(), CHUNKS)
    stock = Stock.reconstruct(pipeline, stock_segmentation, hard_clusters, count)
    assert np.array_equal(overlapping.data, stock.data)
    exclusive_count = SlidingWindowFeature(np.minimum(count.data, 1).astype(np.int8), count.sliding_window)
    stock_exclusive = Stock.reconstruct(pipeline, stock_segmentation, hard_clusters, exclusive_count)
    # pyannote pads the exclusive one to its own (smaller) maximum count; the extra column is empty
    width = stock_exclusive.data.shape[1]
    assert np.array_equal(exclusive.data[:, :width], stock_exclusive.data)
    assert not exclusive.data[:, width:].any()
    assert overlapping.data.sum() > exclusive.data.sum() > 0


def test_clean_frames_are_pyannotes():
    """Frames where a speaker is the only one active, per chunk (pyannote's ``filter_embeddings``)."""
    segmentation = _segmentation(20, np.random.default_rng(7))
    scan = _scan(segmentation, 8)
    single = np.sum(segmentation, axis=2, keepdims=True) == 1
    assert np.array_equal(scan.clean, np.sum(segmentation * single, axis=1))


def test_silent_speakers_are_pyannotes():
    """Speakers inactive for a whole chunk, whose cluster becomes -2 (pyannote's ``apply``)."""
    rng = np.random.default_rng(11)
    segmentation = _segmentation(40, rng) * (rng.random((40, 1, SPEAKERS)) >= 0.3)
    scan = _scan(segmentation, 8)
    inactive = np.sum(segmentation, axis=1) == 0  # as pyannote computes ``inactive_speakers``
    assert inactive.any() and not inactive.all()
    assert np.array_equal(~scan.active, inactive)

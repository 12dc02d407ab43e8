"""pyannote's ``SpeakerDiarization`` with two changes that keep its results.

1. No PLDA unless VBx clustering uses it. pyannote.audio 4.0 loads a PLDA for every
   clustering method, from the gated ``speaker-diarization-community-1`` repository by
   default, although only VBx reads it (pyannote/pyannote-audio#2044). Offline bundles
   with agglomerative clustering have none to give.
2. One embedding-network pass per audio chunk. The stock pipeline runs the embedding
   network once per (chunk, local speaker) pair on the same 10 s of audio, with only the
   pooling weights differing, and also for speakers who are silent in the chunk. When
   the embedding model can split its forward pass into frame features and weighted
   pooling (``chunk_frames`` / ``pool_frames``, as ``CAMPPlusEmbedding`` does), this
   class runs the network once per chunk and pools once per active speaker. Silent
   speakers get NaN embeddings, which pyannote's clustering already ignores (they are
   re-assigned to its throw-away cluster -2 afterwards).

This module is named in a pipeline's ``config.yaml`` (``pipeline.name``:
``consumer.engine.pipeline.SpeakerDiarization``), so it is imported by
``pyannote.audio.Pipeline.from_pretrained`` like any pipeline class: moving or renaming it
breaks every bundle built before the move.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization as _StockSpeakerDiarization
from pyannote.core import SlidingWindowFeature


class _UnusedPLDA(PLDA):
    """Stands in for the PLDA that non-VBx clustering never reads."""

    def __init__(self) -> None:  # deliberately skips PLDA.__init__: there are no files
        pass

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        raise RuntimeError("this pipeline has no PLDA: it only serves VBx clustering")


class SpeakerDiarization(_StockSpeakerDiarization):
    """Drop-in ``pyannote.audio.pipelines.SpeakerDiarization`` (see module docstring)."""

    def __init__(self, *, clustering: str = "VBxClustering", plda: Any = None, **kwargs: Any) -> None:
        if clustering != "VBxClustering" and plda is None:
            plda = _UnusedPLDA()
        elif plda is None:
            raise ValueError("VBx clustering needs a PLDA (plda: ...)")
        super().__init__(clustering=clustering, plda=plda, **kwargs)

    def get_embeddings(
        self,
        file: Any,
        binary_segmentations: SlidingWindowFeature,
        exclude_overlap: bool = False,
        hook: Callable[..., None] | None = None,
    ) -> np.ndarray:
        """(num_chunks, num_speakers, dimension) embeddings; NaN for silent speakers."""
        model = self._embedding.model_
        if self.training or not (hasattr(model, "chunk_frames") and hasattr(model, "pool_frames")):
            return super().get_embeddings(file, binary_segmentations, exclude_overlap, hook=hook)

        masks = self._pooling_masks(binary_segmentations, exclude_overlap)
        num_chunks, _, num_speakers = masks.shape
        active = masks.sum(axis=1) > 0  # (num_chunks, num_speakers)
        embeddings = np.full((num_chunks, num_speakers, self._embedding.dimension), np.nan, dtype=np.float32)
        window = binary_segmentations.sliding_window
        batch_size = self.embedding_batch_size
        total = math.ceil(num_chunks / batch_size)
        if hook is not None:
            hook("embeddings", None, total=total, completed=0)

        device = self._embedding.device
        for i, first in enumerate(range(0, num_chunks, batch_size), start=1):
            chunks = range(first, min(first + batch_size, num_chunks))
            pairs = [(c, s) for c in chunks for s in range(num_speakers) if active[c, s]]
            if pairs:
                waveforms = torch.stack(
                    [self._audio.crop(file, window[c], mode="pad")[0] for c in chunks]
                )  # (batch, 1, num_samples)
                with torch.inference_mode():
                    frames = model.chunk_frames(waveforms.to(device))
                    rows = torch.tensor([c - first for c, _ in pairs], device=device)
                    weights = torch.from_numpy(np.stack([masks[c, :, s] for c, s in pairs])).to(device)
                    pooled = model.pool_frames(frames[rows], weights).float().cpu().numpy()
                for (c, s), vector in zip(pairs, pooled, strict=True):
                    embeddings[c, s] = vector
            if hook is not None:
                hook("embeddings", None, total=total, completed=i)
        return embeddings

    def _pooling_masks(self, binary_segmentations: SlidingWindowFeature, exclude_overlap: bool) -> np.ndarray:
        """Pooling weights per (chunk, frame, speaker), chosen as the stock pipeline does."""
        masks = np.nan_to_num(binary_segmentations.data, nan=0.0).astype(np.float32)
        if not exclude_overlap:
            return masks
        # Use only single-speaker frames, unless too few remain to compute an embedding.
        duration = binary_segmentations.sliding_window.duration
        num_frames = masks.shape[1]
        min_num_frames = math.ceil(
            num_frames * self._embedding.min_num_samples / (duration * self._embedding.sample_rate)
        )
        clean = masks * (masks.sum(axis=2, keepdims=True) < 2)
        enough = clean.sum(axis=1, keepdims=True) > min_num_frames
        return np.where(enough, clean, masks)

"""pyannote's ``SpeakerDiarization`` with three changes.

1. No PLDA unless VBx clustering uses it. pyannote.audio 4.0 loads a PLDA for every
   clustering method, from the gated ``speaker-diarization-community-1`` repository by
   default, although only VBx reads it (pyannote/pyannote-audio#2044). Offline bundles
   with agglomerative clustering have none to give.
2. One embedding-network pass per region of audio, not per chunk and speaker. The stock
   pipeline runs the embedding network once per (chunk, local speaker) pair on the same
   10 s of audio, and chunks start every second, so each audio frame goes through the
   network about 30 times. When the embedding model can split its forward pass into
   frame features and weighted pooling (``chunk_frames`` / ``pool_frames`` /
   ``num_frames`` / ``frame_step``, as ``CAMPPlusEmbedding`` does), this class runs the
   network once over each region of ``REGION_SECONDS`` worth of consecutive chunks
   (plus one chunk of context), slices every chunk's frames out of it and pools them
   once per active speaker with the segmentation weights. The result is close to, not
   equal to, per-chunk embeddings: CAM++'s feature mean normalisation and its
   context-aware masking average over the whole input, which is now the region (on a
   generated 4-voice conversation: cosine 0.92 on average to the per-chunk ones).
   Silent speakers get NaN embeddings, which pyannote's clustering already ignores
   (they are re-assigned to its throw-away cluster -2 afterwards).

3. ``constrained_assignment`` (pipeline parameter, default off as in pyannote): one
   chunk's local speakers are assigned to clusters jointly (Hungarian), so two voices the
   segmentation model told apart within a chunk never end up as one speaker.

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
from pyannote.core import Segment, SlidingWindowFeature

# Length of audio whose CAM++ frame features are computed in one pass, in seconds of chunk
# starts: each region costs its span plus one chunk duration of context.
REGION_SECONDS = 60.0


class _UnusedPLDA(PLDA):
    """Stands in for the PLDA that non-VBx clustering never reads."""

    def __init__(self) -> None:  # deliberately skips PLDA.__init__: there are no files
        pass

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        raise RuntimeError("this pipeline has no PLDA: it only serves VBx clustering")


class SpeakerDiarization(_StockSpeakerDiarization):
    """Drop-in ``pyannote.audio.pipelines.SpeakerDiarization`` (see module docstring)."""

    def __init__(
        self,
        *,
        clustering: str = "VBxClustering",
        plda: Any = None,
        constrained_assignment: bool = False,
        **kwargs: Any,
    ) -> None:
        if clustering != "VBxClustering" and plda is None:
            plda = _UnusedPLDA()
        elif plda is None:
            raise ValueError("VBx clustering needs a PLDA (plda: ...)")
        super().__init__(clustering=clustering, plda=plda, **kwargs)
        # one chunk's local speakers are different people: never give two of them one cluster
        self.clustering.constrained_assignment = constrained_assignment

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
        # chunks per region: a region's frames serve every chunk inside it
        per_region = max(1, round(REGION_SECONDS / window.step))
        chunk_frames = model.num_frames(round(window.duration * model.hparams["sample_rate"]))
        total = math.ceil(num_chunks / per_region)
        if hook is not None:
            hook("embeddings", None, total=total, completed=0)

        device = self._embedding.device
        for i, first in enumerate(range(0, num_chunks, per_region), start=1):
            last = min(first + per_region, num_chunks)
            if active[first:last].any():
                region = Segment(window[first].start, window[last - 1].end)
                waveform = self._audio.crop(file, region, mode="pad")[0]  # (1, num_samples)
                with torch.inference_mode():
                    frames = model.chunk_frames(waveform[None].to(device))[0]  # (channels, region_frames)
                    for c in range(first, last):
                        speakers = np.flatnonzero(active[c])
                        if not len(speakers):
                            continue
                        offset = round((window[c].start - region.start) / model.frame_step)
                        chunk = frames[:, offset : offset + chunk_frames]
                        if chunk.shape[-1] < chunk_frames:  # only ever by a rounding frame at the end
                            chunk = torch.nn.functional.pad(chunk, (0, chunk_frames - chunk.shape[-1]))
                        weights = torch.from_numpy(masks[c][:, speakers].T.copy()).to(device)
                        pooled = model.pool_frames(chunk[None], weights[None])[0]
                        embeddings[c, speakers] = pooled.float().cpu().numpy()
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

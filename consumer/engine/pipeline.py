"""pyannote's ``SpeakerDiarization`` with six changes.

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
4. Segmentation into one preallocated array. pyannote's sliding inference keeps each
   batch's small output alive in a list while the model's large temporaries (up to
   160 MB a batch) come and go around it; in one heap (``consumer.memory``) those pinned
   outputs fragment it, which grew the resident memory by 0.8 GB per hour of audio.
   Here every batch's output is copied into one array allocated once, and nothing else
   outlives its batch. The outputs are the same numbers (same batches, same model).
5. Bounded clustering. pyannote hands every clean (chunk, speaker) embedding to scipy's
   ``linkage``, whose condensed distance matrix (and its working copy) grows with the
   square of their number: 4.1 GB more at peak for four hours of a generated 4-voice
   conversation. When there are more than ``MAX_CLUSTERED_EMBEDDINGS``, an evenly spaced subset of them (in
   time order) forms the clusters; every embedding is then assigned to the nearest
   centroid as before. The clustering's ``min_cluster_size`` counts the subset's
   embeddings, so on long files a speaker needs proportionally more speech to stand
   alone: ``min_cluster_size`` times (clean embeddings / ``MAX_CLUSTERED_EMBEDDINGS``).
6. Digital silence is not run through the segmentation model. A batch of chunks whose
   samples are all exactly zero (a muted microphone, a padded or hostile recording) gets
   the model's scores for one such chunk, computed once per file: the same input gives the
   same scores, so the result does not change, and three hours of silence cost seconds
   instead of minutes. Any nonzero sample (dither, noise) and the batch is inferred.

This module is named in a pipeline's ``config.yaml`` (``pipeline.name``:
``consumer.engine.pipeline.SpeakerDiarization``), so it is imported by
``pyannote.audio.Pipeline.from_pretrained`` like any pipeline class: moving or renaming it
breaks every bundle built before the move.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization as _StockSpeakerDiarization
from pyannote.audio.utils.reproducibility import fix_reproducibility
from pyannote.core import Segment, SlidingWindow, SlidingWindowFeature

# Length of audio whose CAM++ frame features are computed in one pass, in seconds of chunk
# starts: each region costs its span plus one chunk duration of context.
REGION_SECONDS = 60.0

# Most embeddings the agglomerative clustering sees (see module docstring): its distance
# matrices then take at most 2 x 4000^2 / 2 x 8 bytes = 128 MB.
MAX_CLUSTERED_EMBEDDINGS = 4000


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
        self.clustering.filter_embeddings = _at_most(MAX_CLUSTERED_EMBEDDINGS, self.clustering.filter_embeddings)

    def get_segmentations(self, file: Any, hook: Callable[..., None] | None = None) -> SlidingWindowFeature:
        """(num_chunks, num_frames, num_speakers) segmentation scores, as pyannote's sliding
        inference gives them (``Inference.slide`` without aggregation), in one array."""
        inference = self._segmentation
        if self.training or inference.window != "sliding":
            return super().get_segmentations(file, hook=hook)
        fix_reproducibility(inference.device)
        waveform, sample_rate = inference.model.audio(file)  # (channels, samples)
        window = inference.model.audio.get_num_samples(inference.duration)
        step = round(inference.step * sample_rate)
        num_samples = waveform.shape[1]
        num_full = 0 if num_samples < window else 1 + (num_samples - window) // step
        has_last = num_samples < window or (num_samples - window) % step > 0
        total = num_full + has_last
        # (chunk, channel, sample) views of the waveform in batches; the last chunk zero-padded
        batches: list[tuple[int, torch.Tensor]] = []
        if num_full:
            chunks = waveform.unfold(1, window, step).transpose(0, 1)
            batches = [
                (first, chunks[first : first + inference.batch_size])
                for first in range(0, num_full, inference.batch_size)
            ]
        if has_last:
            last = waveform[:, num_full * step :]
            batches.append((num_full, torch.nn.functional.pad(last, (0, window - last.shape[1]))[None]))
        if hook is not None:
            hook("segmentation", None, completed=0, total=total)
        outputs: np.ndarray | None = None
        silent: np.ndarray | None = None  # the scores of one chunk of digital silence (change 6)
        for first, batch in batches:
            if batch.any():
                scores = cast(np.ndarray, inference.infer(batch))  # a segmentation model has one output
            else:
                if silent is None:
                    silent = cast(np.ndarray, inference.infer(batch[:1]))
                scores = np.broadcast_to(silent, (len(batch), *silent.shape[1:]))
            if outputs is None:
                outputs = np.empty((total, *scores.shape[1:]), dtype=scores.dtype)
            outputs[first : first + len(scores)] = scores
            del scores
            if hook is not None:
                hook("segmentation", None, completed=first + len(batch), total=total)
        assert outputs is not None  # there is always at least one (possibly padded) chunk
        return SlidingWindowFeature(outputs, SlidingWindow(start=0.0, duration=inference.duration, step=inference.step))

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


def _at_most(
    limit: int, filter_embeddings: Callable[..., tuple[np.ndarray, ...]]
) -> Callable[..., tuple[np.ndarray, ...]]:
    """``filter_embeddings`` (pyannote's choice of the embeddings to cluster), thinned to at
    most ``limit`` evenly spaced ones; its other outputs (chunk and speaker indices) alike."""

    def bounded(*args: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        chosen = filter_embeddings(*args, **kwargs)
        if len(chosen[0]) <= limit:
            return chosen
        keep = evenly_spaced(len(chosen[0]), limit)
        return tuple(array[keep] for array in chosen)

    return bounded


def evenly_spaced(count: int, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` of ``count`` items, spread evenly, first and last included."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))

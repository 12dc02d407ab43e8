"""pyannote's ``SpeakerDiarization`` with seven changes.

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
   Silent speakers get NaN embeddings, which the clustering ignores.
3. ``constrained_assignment`` (pipeline parameter, default off as in pyannote): one
   chunk's local speakers are assigned to clusters jointly (Hungarian), so two voices the
   segmentation model told apart within a chunk never end up as one speaker.
4. Memory that does not grow with the audio, apart from about 5 KB per second. The audio
   is read from its ``SampleFile`` (``Samples``) one block of ``BLOCK_SECONDS`` at a time; each block is
   segmented and embedded, then only what later steps need is kept: the binary
   segmentation packed to bits (221 bytes per chunk, i.e. per second), each chunk's
   embeddings (2.3 KB), its clean-frame counts, and the running sums of the speaker count
   (8 bytes per output frame). The reconstruction runs over the blocks again, adding each
   chunk's clustered activations into one (frames, speakers) array, where pyannote builds
   a (chunks, frames, speakers) float64 array first (2 GB for a day of 5 speakers). The
   arithmetic is pyannote's (``speaker_count``, ``reconstruct``, ``to_diarization``), so
   the numbers are the same; ``tests/unit/test_streaming_reconstruction.py`` holds them
   equal. This needs a powerset segmentation model (binary scores), a frame-pooling
   embedding model and agglomerative clustering, as the offline bundle has; any other
   pipeline runs pyannote's own ``apply`` on the samples read into memory.
5. Every embedding clustered, at bounded cost (``consumer.engine.clustering``): up to
   ``MAX_CLUSTERED_EMBEDDINGS`` clean embeddings are clustered as pyannote does; more are
   clustered in windows of that many, whose clusters are then merged, so that
   ``min_cluster_size`` counts all of a speaker's embeddings, in a long file as in a short
   one. (Before, an evenly spaced subset was clustered, and a speaker of five minutes in a
   day could fall below ``min_cluster_size`` and vanish into another.)
6. Digital silence is not run through the segmentation model. A batch of chunks whose
   samples are all exactly zero (a muted microphone, a padded or hostile recording) gets
   the model's scores for one such chunk, computed once per file: the same input gives the
   same scores, so the result does not change, and three hours of silence cost seconds
   instead of minutes. Any nonzero sample (dither, noise) and the batch is inferred.
7. Progress and stage timings through the hook: ``hook("segmentation" | "embeddings",
   None, completed=chunks, total=chunks)`` after every segmentation batch and embedding
   region (the two steps alternate, block by block), ``hook("clustering", None)`` between
   the clustering's windows and reconstruction blocks (a day's clustering takes minutes on
   CPU: the job's heartbeat must not stop), and ``hook(step, None, seconds=...)`` with each
   stage's total time.

This module is named in a pipeline's ``config.yaml`` (``pipeline.name``:
``consumer.engine.pipeline.SpeakerDiarization``), so it is imported by
``pyannote.audio.Pipeline.from_pretrained`` like any pipeline class: moving or renaming it
breaks every bundle built before the move.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np
import torch
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization as _StockSpeakerDiarization
from pyannote.audio.pipelines.clustering import AgglomerativeClustering
from pyannote.audio.pipelines.speaker_diarization import DiarizeOutput
from pyannote.audio.pipelines.utils.diarization import set_num_speakers
from pyannote.audio.utils.reproducibility import fix_reproducibility
from pyannote.core import Annotation, SlidingWindow, SlidingWindowFeature

from consumer.engine import Samples
from consumer.engine.clustering import cluster_in_windows

# Length of audio whose CAM++ frame features are computed in one pass, in seconds of chunk
# starts: each region costs its span plus one chunk duration of context.
REGION_SECONDS = 60.0

# Audio read, segmented and embedded at a time, in seconds of chunk starts (a multiple of
# REGION_SECONDS): 39 MB of samples, 4 MB of scores.
BLOCK_SECONDS = 600.0

# Most embeddings clustered in one agglomerative pass (see change 5): its distance
# matrices then take at most 2 x 4000^2 / 2 x 8 bytes = 128 MB.
MAX_CLUSTERED_EMBEDDINGS = 4000

# Frames per reconstruction step of the (frames, speakers) activations (see discrete_diarization).
_FRAME_BLOCK = 1 << 18

Hook = Callable[..., None]


class _UnusedPLDA(PLDA):
    """Stands in for the PLDA that non-VBx clustering never reads."""

    def __init__(self) -> None:  # deliberately skips PLDA.__init__: there are no files
        pass

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        raise RuntimeError("this pipeline has no PLDA: it only serves VBx clustering")


@dataclass
class Scan:
    """What one pass over the audio keeps (change 4): per chunk, and per output frame."""

    chunks: SlidingWindow
    frames: SlidingWindow  # the output frames (the segmentation model's receptive field)
    frames_per_chunk: int
    packed: np.ndarray  # (chunks, ceil(frames_per_chunk * speakers / 8)) uint8: the binary segmentation
    speakers: int  # local speakers per chunk
    clean: np.ndarray  # (chunks, speakers): frames where that speaker alone is active
    active: np.ndarray  # (chunks, speakers) bool: that speaker is active somewhere in the chunk
    count_sum: np.ndarray  # (frames,): active local speakers summed over the chunks covering a frame
    coverage: np.ndarray  # (frames,): chunks covering a frame
    embeddings: np.ndarray | None  # (chunks, speakers, dimension), NaN for silent speakers

    @classmethod
    def empty(
        cls,
        chunks: SlidingWindow,
        frames: SlidingWindow,
        num_chunks: int,
        num_frames: int,
        shape: tuple[int, int],
        dimension: int | None,
    ) -> Scan:
        """Room for ``num_chunks`` chunks of ``shape`` (frames, speakers) scores over ``num_frames``
        output frames; embeddings of ``dimension`` (None: no embeddings, a VAD job)."""
        frames_per_chunk, speakers = shape
        return cls(
            chunks=chunks,
            frames=frames,
            frames_per_chunk=frames_per_chunk,
            packed=np.zeros((num_chunks, math.ceil(frames_per_chunk * speakers / 8)), np.uint8),
            speakers=speakers,
            clean=np.zeros((num_chunks, speakers), np.float32),
            active=np.zeros((num_chunks, speakers), bool),
            count_sum=np.zeros(num_frames, np.float32),
            coverage=np.zeros(num_frames, np.float32),
            embeddings=None if dimension is None else np.full((num_chunks, speakers, dimension), np.nan, np.float32),
        )

    @property
    def num_chunks(self) -> int:
        return len(self.packed)

    def segmentation(self, first: int, last: int) -> np.ndarray:
        """(last - first, frames_per_chunk, speakers) float32 binary segmentation of those chunks."""
        bits = np.unpackbits(self.packed[first:last], axis=1, count=self.frames_per_chunk * self.speakers)
        return bits.reshape(last - first, self.frames_per_chunk, self.speakers).astype(np.float32)

    def start_frame(self, chunk: int) -> int:
        """The output frame where ``chunk``'s first frame lands (as ``Inference.aggregate`` places it)."""
        return int(self.frames.closest_frame(self.chunks[chunk].start + 0.5 * self.frames.duration))

    def count(self) -> SlidingWindowFeature:
        """(frames, 1) uint8 speaker count, as pyannote's ``speaker_count`` without warm-up."""
        average = self.count_sum / np.maximum(self.coverage, 1e-12)
        return SlidingWindowFeature(np.rint(average).astype(np.uint8)[:, None], self.frames)


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

    @property
    def streams(self) -> bool:
        """Whether this pipeline runs block by block (change 4), not pyannote's ``apply``."""
        model = self._embedding.model_
        return (
            not self.training
            and self._segmentation.window == "sliding"
            and bool(getattr(self._segmentation.model.specifications, "powerset", False))
            and hasattr(model, "chunk_frames")
            and hasattr(model, "pool_frames")
            and isinstance(self.clustering, AgglomerativeClustering)
        )

    def diarize(
        self,
        samples: Samples,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: Hook | None = None,
    ) -> DiarizeOutput:
        """Speaker diarization of ``samples``, as ``apply`` gives it (see module docstring)."""
        if not self.streams:
            return cast(
                DiarizeOutput,
                self(
                    in_memory(samples),
                    num_speakers=num_speakers,
                    min_speakers=min_speakers,
                    max_speakers=max_speakers,
                    hook=hook,
                ),
            )
        hook = hook or _no_hook
        num_speakers, min_speakers, max_speakers = set_num_speakers(num_speakers, min_speakers, max_speakers)
        scan = self._scan(samples, embed=True, hook=hook)
        count = scan.count()
        hook("speaker_counting", count)
        if not count.data.any():
            hook("clustering", None, seconds=0.0)
            return DiarizeOutput(Annotation(uri="job"), Annotation(uri="job"), np.zeros((0, self._embedding.dimension)))
        started = time.perf_counter()
        assert scan.embeddings is not None
        beat = partial(hook, "clustering", None)  # the job is alive (stages without chunks to count)
        hard_clusters, centroids = self._cluster(scan, num_speakers, min_speakers, max_speakers, beat)
        count.data = np.minimum(count.data, max_speakers).astype(np.int8)
        diarization, exclusive = discrete_diarization(scan, hard_clusters, count, beat)
        beat()
        output = self._annotate(diarization, exclusive, centroids)
        hook("clustering", None, seconds=time.perf_counter() - started)
        return output

    def speech_count(self, samples: Samples, hook: Hook | None = None) -> SlidingWindowFeature:
        """(frames, 1) count of active speakers, from the segmentation alone (a VAD job)."""
        if not self.streams:
            segmentations = self.get_segmentations(in_memory(samples), hook=hook)
            return self.speaker_count(segmentations, self._segmentation.model.receptive_field, warm_up=(0.0, 0.0))
        return self._scan(samples, embed=False, hook=hook or _no_hook).count()

    def _scan(self, samples: Samples, *, embed: bool, hook: Hook) -> Scan:
        """One pass over the audio, block by block: segmentation, speaker count sums, embeddings."""
        inference = self._segmentation
        fix_reproducibility(inference.device)
        rate = samples.sample_rate
        window = inference.model.audio.get_num_samples(inference.duration)
        step = round(inference.step * rate)
        num_samples = len(samples)
        num_full = 0 if num_samples < window else 1 + (num_samples - window) // step
        total = num_full + (num_samples < window or (num_samples - window) % step > 0)
        chunks = SlidingWindow(start=0.0, duration=inference.duration, step=inference.step)
        field = inference.model.receptive_field
        frames = SlidingWindow(start=0.0, duration=field.duration, step=field.step)
        num_frames = frames.closest_frame(inference.duration + (total - 1) * inference.step + 0.5 * field.duration) + 1
        per_block = max(1, round(BLOCK_SECONDS / inference.step))
        seconds = {"segmentation": 0.0, "embeddings": 0.0}
        dimension = self._embedding.dimension if embed else None
        silent: list[np.ndarray] = []  # the scores of one chunk of digital silence (change 6)
        scan: Scan | None = None
        for first in range(0, total, per_block):
            last = min(first + per_block, total)
            started = time.perf_counter()
            audio = samples.padded(first * step, (last - 1 - first) * step + window)
            batch = torch.from_numpy(audio)[None].unfold(1, window, step).transpose(0, 1)  # (chunk, channel, sample)
            scores = self._segment(batch, silent, _progress(hook, "segmentation", first, total))
            if scan is None:
                scan = Scan.empty(chunks, frames, total, num_frames, scores.shape[1:], dimension)
            keep_scores(scan, first, scores)
            seconds["segmentation"] += time.perf_counter() - started
            if scan.embeddings is not None:
                started = time.perf_counter()
                self._embed(
                    audio,
                    step,
                    first,
                    scores,
                    scan.embeddings,
                    _progress(hook, "embeddings", first, total),
                )
                seconds["embeddings"] += time.perf_counter() - started
        assert scan is not None  # there is always at least one (possibly padded) chunk
        for stage, spent in seconds.items():
            hook(stage, None, seconds=spent)
        return scan

    def _segment(self, chunks: torch.Tensor, silent: list[np.ndarray], done: Callable[[int], None]) -> np.ndarray:
        """(chunks, frames, speakers) binary scores, a batch at a time (change 6 for silent batches);
        ``done`` is told how many chunks are scored after each batch."""
        inference = self._segmentation
        outputs: list[np.ndarray] = []
        for first in range(0, len(chunks), inference.batch_size):
            batch = chunks[first : first + inference.batch_size]
            if batch.any():
                outputs.append(cast(np.ndarray, inference.infer(batch)))  # a segmentation model has one output
                done(first + len(batch))
                continue
            if not silent:
                silent.append(cast(np.ndarray, inference.infer(batch[:1])))
            outputs.append(np.broadcast_to(silent[0], (len(batch), *silent[0].shape[1:])))
            done(first + len(batch))
        return np.concatenate(outputs)

    def _embed(
        self,
        audio: np.ndarray,
        step: int,
        first: int,
        scores: np.ndarray,
        embeddings: np.ndarray,
        done: Callable[[int], None],
    ) -> None:
        """Embeddings of the chunks ``first``.. whose ``audio`` (from chunk ``first``'s start) and scores
        these are; ``done`` is told how many of them are embedded after each region."""
        model = self._embedding.model_
        masks = self._pooling_masks(scores, self.embedding_exclude_overlap)
        active = masks.sum(axis=1) > 0  # (chunks, speakers)
        chunk_samples = round(self._segmentation.duration * model.hparams["sample_rate"])
        chunk_frames = model.num_frames(chunk_samples)
        per_region = max(1, round(REGION_SECONDS / self._segmentation.step))
        device = self._embedding.device
        for region in range(0, len(scores), per_region):
            end = min(region + per_region, len(scores))
            if not active[region:end].any():
                done(end)
                continue
            waveform = torch.from_numpy(audio[region * step : (end - 1) * step + chunk_samples])
            with torch.inference_mode():
                features = model.chunk_frames(waveform[None, None].to(device))[0]  # (channels, region_frames)
                for c in range(region, end):
                    speakers = np.flatnonzero(active[c])
                    if not len(speakers):
                        continue
                    offset = round((c - region) * self._segmentation.step / model.frame_step)
                    chunk = features[:, offset : offset + chunk_frames]
                    if chunk.shape[-1] < chunk_frames:  # only ever by a rounding frame at the end
                        chunk = torch.nn.functional.pad(chunk, (0, chunk_frames - chunk.shape[-1]))
                    weights = torch.from_numpy(masks[c][:, speakers].T.copy()).to(device)
                    pooled = model.pool_frames(chunk[None], weights[None])[0]
                    embeddings[first + c, speakers] = pooled.float().cpu().numpy()
            done(end)

    def _pooling_masks(self, binary: np.ndarray, exclude_overlap: bool) -> np.ndarray:
        """Pooling weights per (chunk, frame, speaker), chosen as the stock pipeline does."""
        masks = np.nan_to_num(binary, nan=0.0).astype(np.float32)
        if not exclude_overlap:
            return masks
        # Use only single-speaker frames, unless too few remain to compute an embedding.
        num_frames = masks.shape[1]
        min_num_frames = math.ceil(
            num_frames * self._embedding.min_num_samples / (self._segmentation.duration * self._embedding.sample_rate)
        )
        clean = masks * (masks.sum(axis=2, keepdims=True) < 2)
        enough = clean.sum(axis=1, keepdims=True) > min_num_frames
        return np.where(enough, clean, masks)

    def _cluster(
        self,
        scan: Scan,
        num_speakers: int | None,
        min_speakers: int,
        max_speakers: float,
        beat: Callable[[], None] = lambda: None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(chunks, speakers) clusters (-2: silent) and (clusters, dimension) centroids, as pyannote's
        ``BaseClustering.__call__`` gives them, clustering every clean embedding (change 5)."""
        clustering = cast(AgglomerativeClustering, self.clustering)
        embeddings = scan.embeddings
        assert embeddings is not None
        usable = (scan.clean >= 0.2 * scan.frames_per_chunk) & ~np.isnan(embeddings).any(axis=2)
        chunk_idx, speaker_idx = np.nonzero(usable)
        train = embeddings[chunk_idx, speaker_idx]
        num_clusters, min_clusters, max_clusters = clustering.set_num_clusters(
            len(train),
            num_clusters=num_speakers,
            min_clusters=min_speakers,
            max_clusters=None if math.isinf(max_speakers) else int(max_speakers),
        )
        if max_clusters < 2:
            hard_clusters = np.zeros(usable.shape, dtype=np.int8)
            centroids = np.mean(train, axis=0, keepdims=True)
        else:
            if len(train) <= MAX_CLUSTERED_EMBEDDINGS:
                labels = clustering.cluster(
                    train.copy(), min_clusters=min_clusters, max_clusters=max_clusters, num_clusters=num_clusters
                )
            else:
                labels = cluster_in_windows(
                    train,
                    threshold=clustering.threshold,
                    min_cluster_size=clustering.min_cluster_size,
                    window=MAX_CLUSTERED_EMBEDDINGS,
                    num_clusters=num_clusters,
                    min_clusters=min_clusters,
                    max_clusters=max_clusters,
                    beat=beat,
                )
            beat()
            hard_clusters, _, centroids = clustering.assign_embeddings(
                embeddings, chunk_idx, speaker_idx, labels, constrained=clustering.constrained_assignment
            )
        hard_clusters = np.asarray(hard_clusters).astype(np.int64)
        hard_clusters[~scan.active] = -2
        return hard_clusters, centroids

    def _annotate(
        self, discrete: SlidingWindowFeature, exclusive: SlidingWindowFeature, centroids: np.ndarray
    ) -> DiarizeOutput:
        """Annotations labelled SPEAKER_00.. and centroids in their order, as ``apply`` ends."""
        min_duration_off = self.segmentation.min_duration_off
        diarization = self.to_annotation(discrete, min_duration_on=0.0, min_duration_off=min_duration_off)
        exclusive_diarization = self.to_annotation(exclusive, min_duration_on=0.0, min_duration_off=min_duration_off)
        mapping = {label: name for label, name in zip(diarization.labels(), self.classes(), strict=False)}
        diarization = diarization.rename_labels(mapping=mapping)
        exclusive_diarization = exclusive_diarization.rename_labels(mapping=mapping)
        diarization.uri = exclusive_diarization.uri = "job"
        if len(diarization.labels()) > centroids.shape[0]:
            centroids = np.pad(centroids, ((0, len(diarization.labels()) - centroids.shape[0]), (0, 0)))
        inverse = {name: label for label, name in mapping.items()}
        centroids = centroids[[inverse[name] for name in diarization.labels()]]
        return DiarizeOutput(diarization, exclusive_diarization, centroids)


def keep_scores(scan: Scan, first: int, scores: np.ndarray) -> None:
    """Keep what later steps need of the scores of chunks ``first``.. (see ``Scan``)."""
    binary = scores > 0.5
    scan.packed[first : first + len(scores)] = np.packbits(binary.reshape(len(scores), -1), axis=1)
    speaking = binary.sum(axis=2)  # (chunks, frames): how many local speakers are active
    scan.clean[first : first + len(scores)] = (binary & (speaking == 1)[..., None]).sum(axis=1)
    scan.active[first : first + len(scores)] = binary.any(axis=1)
    width = scan.frames_per_chunk
    for i, per_frame in enumerate(speaking):
        start = scan.start_frame(first + i)
        scan.count_sum[start : start + width] += per_frame
        scan.coverage[start : start + width] += 1.0


def discrete_diarization(
    scan: Scan, hard_clusters: np.ndarray, count: SlidingWindowFeature, beat: Callable[[], None] = lambda: None
) -> tuple[SlidingWindowFeature, SlidingWindowFeature]:
    """Discrete diarization, overlapping and exclusive (count capped at 1), as pyannote's
    ``reconstruct`` gives them, one block of chunks at a time (change 4); ``beat`` after each block."""
    num_clusters = int(hard_clusters.max()) + 1
    columns = max(num_clusters, int(count.data.max()))
    activations = np.zeros((len(scan.coverage), columns), np.float32)
    per_block = max(1, round(BLOCK_SECONDS / scan.chunks.step))
    width = scan.frames_per_chunk
    for first in range(0, scan.num_chunks, per_block):
        last = min(first + per_block, scan.num_chunks)
        segmentation = scan.segmentation(first, last)
        for i, clusters in enumerate(hard_clusters[first:last]):
            start = scan.start_frame(first + i)
            for k in np.unique(clusters):
                if k != -2:
                    activations[start : start + width, k] += segmentation[i][:, clusters == k].max(axis=1)
    assert len(count.data) == len(activations)  # the same chunks, aggregated onto the same frames
    counts = count.data[:, 0].astype(np.int64)
    overlapping = np.zeros(activations.shape, np.uint8)
    exclusive = np.zeros(activations.shape, np.uint8)
    for first in range(0, len(activations), _FRAME_BLOCK):
        part = slice(first, first + _FRAME_BLOCK)
        ranks = np.argsort(np.argsort(-activations[part], axis=-1), axis=-1)  # 0: the most active cluster
        overlapping[part] = ranks < counts[part, None]
        exclusive[part] = ranks < np.minimum(counts[part], 1)[:, None]
    return (
        SlidingWindowFeature(overlapping, count.sliding_window),
        SlidingWindowFeature(exclusive, count.sliding_window),
    )


def in_memory(samples: Samples) -> dict[str, Any]:
    """A pyannote file of ``samples`` read into memory, for pipelines that cannot stream (change 4)."""
    waveform = samples.read(0, len(samples))
    return {"waveform": torch.from_numpy(waveform)[None], "sample_rate": samples.sample_rate, "uri": "job"}


def _progress(hook: Hook, step: str, offset: int, total: int) -> Callable[[int], None]:
    """Tells ``hook`` that ``step`` has done ``offset`` + n of ``total`` chunks, given n."""
    return lambda done: hook(step, None, completed=offset + done, total=total)


def _no_hook(*_: Any, **__: Any) -> None:
    pass

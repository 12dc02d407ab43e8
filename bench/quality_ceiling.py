#!/usr/bin/env python3
"""What the quality targets would take: the bundle against an oracle clustering, more speech, cleaner embeddings.

Scored on ``score_der.py``'s sets (AMI train split, pyannote's sample, generated 2-5 voice
conversations), DER as pyannote scores it. Variants of the offline bundle; unless said
otherwise each keeps the bundle's segmentation, speaker counting and reconstruction:

- ``bundle``: as shipped.
- ``oracle clustering``: every (chunk, local speaker) goes to the reference speaker it
  overlaps most (pyannote's ``OracleClustering``). No change to the embeddings or the
  clustering can do better than this: what it leaves is the segmentation's. It also
  prints, per file, how many reference speakers have at least one of the embeddings
  pyannote clusters (those with 2 s of single-speaker speech in their chunk): a speaker
  without one cannot get a cluster of their own from any clustering of them.
- ``overlap counted from T``: pyannote counts the speakers of a frame by rounding the
  mean, over the chunks that see it, of the number active in each; here a second
  (third) speaker counts from a mean of 1 + T (2 + T), so more overlap is kept.
- ``speakers from marginals >= T``: a local speaker is active where the powerset
  output's probability of the classes that include them reaches T (as well as where
  the most likely class includes them), instead of only the latter.
- ``clean audio, threshold T``: CAM++ run once per (chunk, local speaker) on the samples
  where that speaker alone is active (at least 0.5 s of them), instead of pooled from the
  frames of a whole region, clustered at threshold T. It feeds the network only the
  speaker's voice, and costs one network pass per (chunk, speaker) over up to 10 s: on the
  generated conversations about six times the bundle's whole engine time.

    python bench/quality_ceiling.py [--thresholds 0.58 0.65 0.7] [--overlap-from 0.4 0.3]
                                    [--marginals-from 0.4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import numpy as np
import soundfile as sf
import torch
from pyannote.audio import Pipeline
from pyannote.audio.core.inference import Inference
from pyannote.audio.pipelines.clustering import OracleClustering
from pyannote.core import SlidingWindowFeature
from score_der import SETS, Case, Score, score_hypothesis, table

from consumer.config import Settings
from consumer.engine.pyannote_engine import BATCH_SIZES

MIN_CLEAN_SECONDS = 0.5


def clean_audio_embeddings(pipeline: Any, file: dict[str, Any], segmentations: SlidingWindowFeature) -> np.ndarray:
    """(num_chunks, num_speakers, dimension): CAM++ on each local speaker's single-speaker samples."""
    model = pipeline._embedding.model_
    masks = pipeline._pooling_masks(segmentations, exclude_overlap=True)  # (chunks, frames, speakers)
    num_chunks, num_frames, num_speakers = masks.shape
    window = segmentations.sliding_window
    rate = file["sample_rate"]
    waveform = file["waveform"][0]
    length = round(window.duration * rate)
    frame_of_sample = np.minimum(np.arange(length) * num_frames // length, num_frames - 1)
    embeddings = np.full((num_chunks, num_speakers, pipeline._embedding.dimension), np.nan, dtype=np.float32)
    for c in range(num_chunks):
        start = round(window[c].start * rate)
        chunk = waveform[start : start + length]
        chunk = torch.nn.functional.pad(chunk, (0, length - len(chunk)))
        for s in range(num_speakers):
            alone = masks[c, frame_of_sample, s] > 0
            if alone.sum() < MIN_CLEAN_SECONDS * rate:
                continue
            with torch.inference_mode():
                embeddings[c, s] = model(chunk[torch.from_numpy(alone)][None, None]).numpy()[0]
    return embeddings


def speaker_count_from(threshold: float) -> Callable[..., SlidingWindowFeature]:
    """pyannote's ``speaker_count`` with a k-th speaker counted from a mean of k - 1 + threshold."""

    def speaker_count(
        binarized: SlidingWindowFeature, frames: Any, warm_up: tuple[float, float] = (0.1, 0.1)
    ) -> SlidingWindowFeature:
        trimmed = Inference.trim(binarized, warm_up=warm_up)
        mean = Inference.aggregate(np.sum(trimmed, axis=-1, keepdims=True), frames, hamming=False, skip_average=False)
        count = (mean.data >= threshold).astype(np.uint8)
        for extra in (1, 2):
            count += mean.data >= extra + threshold
        mean.data = count
        return mean

    return speaker_count


class MarginalSpeakers(torch.nn.Module):
    """Powerset output -> speakers active where the most likely class or their marginal >= threshold."""

    def __init__(self, powerset: Any, threshold: float) -> None:
        super().__init__()
        self.powerset, self.threshold = powerset, threshold

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        hard = self.powerset.to_multilabel(scores, soft=False)
        return torch.maximum(hard, (self.powerset.to_multilabel(scores, soft=True) >= self.threshold).float())


def run(pipeline: Any, cases: list[Case], oracle: bool = False) -> list[Score]:
    scores = []
    for case in cases:
        samples, rate = sf.read(str(case.wav), dtype="float32")
        file = {"waveform": torch.from_numpy(samples)[None], "sample_rate": rate, "uri": case.name}
        if oracle:
            file["annotation"] = case.reference
        started = time.perf_counter()
        turns = pipeline(file).speaker_diarization
        seconds = time.perf_counter() - started
        scores.append(score_hypothesis(case, turns, len(samples) / rate, len(turns.labels()), seconds))
    return scores


def clusterable_speakers(pipeline: Any, case: Case) -> int:
    """Reference speakers that the oracle gives at least one of the embeddings pyannote clusters."""
    samples, rate = sf.read(str(case.wav), dtype="float32")
    file = {"waveform": torch.from_numpy(samples)[None], "sample_rate": rate, "uri": case.name}
    file["annotation"] = case.reference
    segmentations = pipeline.get_segmentations(file)
    embeddings = pipeline.get_embeddings(file, segmentations, exclude_overlap=pipeline.embedding_exclude_overlap)
    _, chunks, speakers = pipeline.clustering.filter_embeddings(embeddings, segmentations=segmentations)
    frames = pipeline._segmentation.model.receptive_field
    hard, _, _ = OracleClustering()(embeddings=embeddings, segmentations=segmentations, file=file, frames=frames)
    return len({int(k) for k in hard[chunks, speakers] if k >= 0})


def memoised(compute: Callable[..., Any]) -> Callable[..., Any]:
    """``get_segmentations``/``get_embeddings`` computed once per file (by uri), copies handed out."""
    done: dict[str, Any] = {}

    def cached(file: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if file["uri"] not in done:
            done[file["uri"]] = compute(file, *args, **kwargs)
        value = done[file["uri"]]
        if isinstance(value, SlidingWindowFeature):
            return SlidingWindowFeature(value.data.copy(), value.sliding_window)
        return value.copy()

    return cached


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.58, 0.65, 0.7])
    parser.add_argument("--overlap-from", type=float, nargs="+", default=[0.4, 0.3])
    parser.add_argument("--marginals-from", type=float, nargs="+", default=[0.4])
    args = parser.parse_args()
    model = Settings.from_env(os.environ).engine.model
    pipeline: Any = Pipeline.from_pretrained(model)
    if pipeline is None:
        raise SystemExit(f"no pipeline at {model!r}: run `make models`")
    pipeline.segmentation_batch_size, pipeline.embedding_batch_size = BATCH_SIZES["cpu"]
    cases = [case for load in SETS.values() for case in load()]

    get_segmentations, get_embeddings = pipeline.get_segmentations, pipeline.get_embeddings
    conversion = pipeline._segmentation.conversion
    for threshold in args.marginals_from:
        pipeline._segmentation.conversion = MarginalSpeakers(conversion, threshold)
        print(f"== speakers from marginals >= {threshold}\n" + table(run(pipeline, cases)), flush=True)
    pipeline._segmentation.conversion = conversion

    pipeline.get_segmentations = memoised(get_segmentations)
    pipeline.get_embeddings = memoised(get_embeddings)
    print("== bundle\n" + table(run(pipeline, cases)), flush=True)

    speaker_count = pipeline.speaker_count
    for threshold in args.overlap_from:
        pipeline.speaker_count = speaker_count_from(threshold)
        print(f"== overlap counted from {threshold}\n" + table(run(pipeline, cases)), flush=True)
    pipeline.speaker_count = speaker_count

    clustering = pipeline.clustering
    pipeline.clustering = OracleClustering()
    print("== oracle clustering\n" + table(run(pipeline, cases, oracle=True)), flush=True)
    pipeline.clustering = clustering
    for case in cases:
        if case.set == "train":
            expected = len(case.reference.labels())
            print(
                f"{case.name}: {clusterable_speakers(pipeline, case)} of {expected} speakers have a clustered embedding"
            )

    pipeline.get_embeddings = memoised(
        lambda file, segmentations, *args, **kwargs: clean_audio_embeddings(pipeline, file, segmentations)
    )
    for threshold in args.thresholds:
        clustering.threshold = threshold
        print(f"== clean audio, threshold {threshold}\n" + table(run(pipeline, cases)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

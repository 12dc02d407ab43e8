#!/usr/bin/env python3
"""Sweep the offline bundle's clustering threshold over real and generated conversations.

For each file the segmentation and embeddings are computed once (pyannote's training
cache), then clustering runs for every threshold. Prints DER and the speaker count per
file and threshold, and the mean DER per threshold.

    python bench/tune_clustering.py [--thresholds 0.5 0.55 ...] [--seeds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import numpy as np
import soundfile as sf
import torch
from pyannote.audio import Pipeline
from pyannote.core import Annotation, Segment
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

from consumer.config import Settings
from tests.support.conversation import conversation


def files(seeds: int) -> list[tuple[str, Path, Annotation]]:
    """pyannote's sample plus generated conversations of 2 to 5 voices."""
    import pyannote.audio

    sample = Path(pyannote.audio.__file__).parent / "sample"
    out = [("sample", sample / "sample.wav", next(iter(load_rttm(str(sample / "sample.rttm")).values())))]
    for speakers in (2, 3, 4, 5):
        for seed in range(seeds):
            talk = conversation(speakers, 120, seed=100 + seed)
            reference = Annotation()
            for i, turn in enumerate(talk.turns):
                reference[Segment(turn.start, turn.end), i] = turn.speaker
            out.append((f"{speakers}voices-seed{seed}", talk.wav, reference))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8])
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()

    pipeline = Pipeline.from_pretrained(Settings.from_env(os.environ).engine.model)
    pipeline.training = True  # keeps segmentations and embeddings in the file dict between runs
    base = dict(pipeline.parameters(instantiated=True))
    table: dict[float, list[tuple[str, float, int, int]]] = {t: [] for t in args.thresholds}
    for name, wav, reference in files(args.seeds):
        samples, rate = sf.read(str(wav), dtype="float32")
        file = {"waveform": torch.from_numpy(samples)[None], "sample_rate": rate, "uri": name}
        for threshold in args.thresholds:
            params = {**base, "clustering": {**base["clustering"], "threshold": threshold}}
            pipeline.instantiate(params)
            hypothesis = pipeline(file).speaker_diarization
            der = DiarizationErrorRate()(reference, hypothesis)
            found, expected = len(hypothesis.labels()), len(reference.labels())
            table[threshold].append((name, der, found, expected))
            print(f"{name:18s} threshold {threshold:.2f}: DER {der:6.2%}  speakers {found}/{expected}", flush=True)
    print("\nthreshold  mean DER  files with the right speaker count")
    for threshold, rows in table.items():
        mean = np.mean([der for _, der, _, _ in rows])
        right = sum(found == expected for _, _, found, expected in rows)
        print(f"  {threshold:.2f}     {mean:6.2%}   {right}/{len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

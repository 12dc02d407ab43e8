#!/usr/bin/env python3
"""A long recording's shortest talker, and its DER against the same audio in 30-minute pieces.

A generated conversation of ``--hours`` (default 8): four voices take most of the time,
and a fifth speaks about ``--guest-minutes`` (default 5) in all, in three appearances
spread over the file (``tests.support.conversation.conversation_with_guest``). The whole
file is diarized in one engine job in a fresh process, as the consumer runs it
(``tests/support/engine_job.py``: decoded to a ``SampleFile``, default options), then the
same audio cut into 30-minute pieces, each its own job. Prints whether the fifth voice got
a label of its own (the label holding most of its speech, and how much of that label is
it), and DER (no collar, overlap scored, whole file) of the whole-file run and of the
pieces (each piece scored against its part of the reference with its own speaker mapping,
errors summed over the pieces: the easier task, since labels need not agree across pieces).

    python bench/long_audio.py [--hours 8] [--guest-minutes 5] [--seed 26]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import soundfile as sf
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

from tests.support.conversation import VOICES, conversation_with_guest

REPO = Path(__file__).resolve().parents[1]
PIECE_SECONDS = 1800


def job(wav: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.engine_job", str(wav)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def annotation(turns: list, offset: float = 0.0, prefix: str = "") -> Annotation:
    result = Annotation()
    for start, end, label in turns:
        result[Segment(start + offset, end + offset)] = prefix + label
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--guest-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=26)
    args = parser.parse_args()
    # a generated 16-bit WAV (920 MB for 8 hours) runs a few seconds past its length: the byte
    # and duration limits are not what is measured here
    os.environ["MAX_AUDIO_BYTES"] = str(8 << 30)
    os.environ["MAX_AUDIO_SECONDS"] = str(args.hours * 3600 + 3600)
    talk = conversation_with_guest(args.hours * 3600, args.guest_minutes * 60, appearances=3, seed=args.seed)
    guest = VOICES[4]
    reference = Annotation()
    for turn in talk.turns:
        reference[Segment(turn.start, turn.end)] = turn.speaker
    spoken = sum(t.end - t.start for t in talk.turns if t.speaker == guest)
    duration = sf.info(str(talk.wav)).duration
    print(f"{talk.wav.name}: {duration / 3600:.2f} h, the fifth voice speaks {spoken:.0f} s", flush=True)

    whole = job(talk.wav)
    hypothesis = annotation(whole["turns"])
    overlap: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for segment, _, speaker in reference.itertracks(yield_label=True):
        for hyp_segment, _, label in hypothesis.crop(segment).itertracks(yield_label=True):
            overlap[label][speaker] += hyp_segment.duration
    label = max(overlap, key=lambda name: overlap[name][guest])
    own = overlap[label][guest] / sum(overlap[label].values())
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    der_whole = metric(reference, hypothesis, uem=Segment(0, duration))
    print(
        f"whole file: {whole['seconds']:.0f} s (RTF {whole['seconds'] / duration:.4f}; stages {whole['stages']}), peak RSS "
        f"{whole['peak_rss_mib']:.0f} MiB, {len(hypothesis.labels())} speakers; the fifth voice -> {label}: "
        f"{overlap[label][guest]:.0f} of its {spoken:.0f} s, {own:.1%} of that label; DER {der_whole:.2%}",
        flush=True,
    )

    errors, total, seconds = 0.0, 0.0, 0.0
    with tempfile.TemporaryDirectory() as folder, sf.SoundFile(str(talk.wav)) as source:
        rate = source.samplerate
        for index, start in enumerate(range(0, int(duration), PIECE_SECONDS)):
            piece = Path(folder) / f"piece-{index}.wav"
            sf.write(str(piece), source.read(PIECE_SECONDS * rate, dtype="int16"), rate, subtype="PCM_16")
            result = job(piece)
            seconds += result["seconds"]
            window = Segment(start, min(duration, start + PIECE_SECONDS))
            components = metric(
                reference.crop(window),
                annotation(result["turns"], offset=start, prefix=f"{index}:"),
                uem=window,
                detailed=True,
            )
            errors += components["confusion"] + components["missed detection"] + components["false alarm"]
            total += components["total"]
    print(f"30-minute pieces: {seconds:.0f} s of jobs; DER {errors / total:.2%}", flush=True)
    print(f"difference (whole - pieces): {100 * (der_whole - errors / total):+.2f} points", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

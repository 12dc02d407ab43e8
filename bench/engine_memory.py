#!/usr/bin/env python3
"""Peak memory and real-time factor of the engine against the audio's duration, speech and silence.

For each duration (hours) and kind, a 16 kHz WAV is generated (``speech``: a 4-voice
espeak-ng conversation, written a turn at a time by
``tests.support.conversation.conversation_with_guest``; ``silence``: digital silence under
faint noise) and one engine job (diarization + speech regions, default options) runs on it
in a fresh process, through the consumer's code path (``engine_rtf.py --one engine``: the
file decoded to a ``SampleFile`` on disk, the engine reading it a window at a time): its
peak RSS is the model plus the engine's working memory.

    python bench/engine_memory.py [--hours 1 4 8 24] [--kinds speech silence]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import numpy as np
import soundfile as sf
from engine_rtf import _run_isolated

RATE = 16_000


def silence(path: Path, hours: float) -> Path:
    """``hours`` of faint noise (-70 dBFS), written a minute at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", RATE, 1, "PCM_16") as out:
        for _ in range(round(hours * 60)):
            out.write((rng.standard_normal(RATE * 60) * 10 ** (-70 / 20)).astype(np.float32))
    return path


def speech(hours: float) -> Path:
    from tests.support.conversation import conversation_with_guest

    return conversation_with_guest(hours * 3600, guest_seconds=0.0, appearances=1, seed=7).wav


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", nargs="+", type=float, default=[1.0, 4.0, 8.0, 24.0])
    parser.add_argument("--kinds", nargs="+", choices=["speech", "silence"], default=["speech", "silence"])
    args = parser.parse_args()
    # the files are generated WAV (16-bit: 2.8 GB a day) and run a few seconds past the hour:
    # the byte and duration limits are not what is measured here
    os.environ["MAX_AUDIO_BYTES"] = str(8 << 30)
    os.environ["MAX_AUDIO_SECONDS"] = str(max(args.hours) * 3600 + 3600)
    print(f"{'kind':8s} {'hours':>5s} {'peak RSS MiB':>12s} {'RTF':>7s} {'speakers':>8s}", flush=True)
    with tempfile.TemporaryDirectory() as temp:
        for kind in args.kinds:
            for hours in args.hours:
                wav = speech(hours) if kind == "speech" else silence(Path(temp) / f"silence-{hours}h.wav", hours)
                row = _run_isolated("engine", wav, 1)
                print(
                    f"{kind:8s} {hours:5.1f} {row['peak_rss_mib']:12d} {row['rtf']:7.4f} {row['speakers']:8d}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

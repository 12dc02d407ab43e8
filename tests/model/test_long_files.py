"""A long file at the service's defaults: its shortest talker is still found, and the engine's
memory does not grow with the duration beyond what it keeps per second (consumer.engine.pipeline).

The day-long case scaled to what the suite can afford: three hours of a 4-voice conversation
in which a fifth voice speaks 1/288 of the time (five minutes of a day: 37.5 s), in two
appearances. bench/long_audio.py runs the same for 8 hours and a day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support.conversation import VOICES, conversation, conversation_with_guest

pytestmark = pytest.mark.model

HOURS = 3.0
GUEST_SECONDS = HOURS * 3600 * 300 / 86_400
# What the engine keeps per hour of audio beyond a constant (consumer.engine.pipeline, change 4:
# embeddings 8.3 MB, speaker-count sums 1.7 MB, activations and discrete diarization about
# 2 MB per speaker, packed segmentation 0.8 MB), with room to spare; the samples themselves
# (230 MB an hour) must not be among it.
KEPT_PER_HOUR_MIB = 40
HEAP_NOISE_MIB = 64
REPO = Path(__file__).resolve().parents[2]


def _job(wav: Path) -> dict:
    """One engine job in a fresh process (tests/support/engine_job.py), at the service's defaults."""
    env = {key: value for key, value in os.environ.items() if key != "MAX_AUDIO_SECONDS"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.engine_job", str(wav)],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_long_files_shortest_talker_is_found_and_memory_stays_flat():
    guest = VOICES[4]
    talk = conversation_with_guest(HOURS * 3600, GUEST_SECONDS, appearances=2, seed=26)
    guest_turns = [t for t in talk.turns if t.speaker == guest]
    spoken = sum(t.end - t.start for t in guest_turns)
    assert 30 <= spoken <= 60, spoken

    long = _job(talk.wav)
    print(f"long: {long['audio_seconds']:.0f} s in {long['seconds']:.0f} s, peak RSS {long['peak_rss_mib']:.0f} MiB")
    overlap: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for ref in talk.turns:
        for start, end, label in long["turns"]:
            shared = min(ref.end, end) - max(ref.start, start)
            if shared > 0:
                overlap[label][ref.speaker] += shared
    heard = {label: voices[guest] for label, voices in overlap.items() if voices[guest] > 0}
    assert heard, "no turn overlaps the guest's speech"
    label = max(heard, key=heard.__getitem__)
    own = overlap[label][guest] / sum(overlap[label].values())
    assert overlap[label][guest] >= 0.5 * spoken and own >= 0.8, (
        f"the guest's {spoken:.1f} s went mostly to {label}, which holds {dict(overlap[label])}"
    )
    assert len(overlap) == 5, f"speakers found: {sorted(overlap)}"

    short = _job(conversation(num_speakers=4, duration=600, seed=7).wav)
    print(
        f"short: {short['audio_seconds']:.0f} s in {short['seconds']:.0f} s, peak RSS {short['peak_rss_mib']:.0f} MiB"
    )
    hours = (long["audio_seconds"] - short["audio_seconds"]) / 3600
    allowed = KEPT_PER_HOUR_MIB * hours + HEAP_NOISE_MIB
    grown = long["peak_rss_mib"] - short["peak_rss_mib"]
    assert grown <= allowed, (
        f"peak RSS {short['peak_rss_mib']:.0f} MiB for {short['audio_seconds']:.0f} s, "
        f"{long['peak_rss_mib']:.0f} MiB for {long['audio_seconds']:.0f} s: {grown:.0f} MiB more, "
        f"over {allowed:.0f} MiB"
    )

"""Time speaker attribution of a long transcript: parse, attribute every word and segment, write.

A four-hour meeting as a transcriber would give it (OpenAI ``verbose_json`` with word
timestamps, about 2.5 words per second) against four-hour diarization turns (1–20 s turns
among four speakers, short pauses). Prints the sizes and seconds for each step.

    PYTHONPATH=. $CACHE_DIR/venv/bin/python bench/transcript_attribution.py [--hours 4]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from consumer.engine import SpeakerTurn
from consumer.transcript import attribute, parse, to_diarized_json, to_json


def meeting(hours: float, seed: int = 1) -> tuple[list[SpeakerTurn], bytes]:
    """Turns and a matching transcript (JSON bytes) covering ``hours`` of audio."""
    rng = random.Random(seed)
    turns, segments, words = [], [], []
    t, end_of_audio = 0.0, hours * 3600
    while t < end_of_audio:
        length = rng.uniform(1.0, 20.0)
        turns.append(SpeakerTurn(t, t + length, f"SPEAKER_{rng.randrange(4):02d}"))
        w, seg_words = t, []
        while w + 0.4 < t + length:
            seg_words.append({"word": "word", "start": round(w, 3), "end": round(w + 0.3, 3)})
            w += 0.4
        segments.append({"start": round(t, 3), "end": round(t + length, 3), "text": " word" * len(seg_words)})
        words.extend(seg_words)
        t += length + rng.uniform(0.0, 1.5)
    return turns, json.dumps({"segments": segments, "words": words}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=4.0)
    args = parser.parse_args()
    turns, data = meeting(args.hours)
    started = time.perf_counter()
    transcript = parse(data)
    parsed = time.perf_counter()
    attributed = attribute(transcript, turns)
    attributed_at = time.perf_counter()
    json.dumps(to_json(attributed))
    json.dumps(to_diarized_json(attributed, args.hours * 3600))
    written = time.perf_counter()
    print(
        f"{args.hours:g} h: {len(turns)} turns, {len(transcript.segments)} segments, "
        f"{transcript.word_count} words, {len(data) / 1e6:.1f} MB of verbose_json"
    )
    print(f"parse     {parsed - started:6.3f} s")
    print(f"attribute {attributed_at - parsed:6.3f} s")
    print(f"write     {written - attributed_at:6.3f} s")
    print(f"total     {written - started:6.3f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Known speakers: how often an enrolled voice is named right, and a voice nobody enrolled is named at all.

Two sets, each enrolled from other audio than it is tested on:

- ``generated``: voices of ``tests.support.conversation.VOICES`` are enrolled from a clip
  of their own (sentences that the conversations never use), in two rounds: the first
  four voices (the 5th is a stranger), then the first two only (voices 3-5 are
  strangers). Tested on the generated conversations of 2-5 voices (two seeds each).
- ``train``: every AMI train-split speaker with at least 3 s of speech of their own
  (no overlap, from the reference) in some file is enrolled from the file where they
  speak most, then sought in every *other* file; speakers without such a second file are
  still enrolled, as distractors.

Each output speaker is mapped to a reference speaker by pyannote's optimal mapping
(the one DER uses). Output speakers whose reference speaker is enrolled from other audio
are *identifiable*: named right, named wrong, or left anonymous. The others (their voice
was never enrolled, or enrolled only from this very file, which the train set skips)
are *strangers*: naming one at all is a false accept.

    python bench/voiceprints.py [--sets generated train]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import numpy as np
import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate
from score_der import Case, generated_cases, hypothesis, train_cases

from consumer.config import Settings
from consumer.engine.identity import identify, make_voiceprint
from consumer.options import JobOptions
from consumer.voiceprints import KnownSpeakers, known_speakers
from tests.support.conversation import ENROLMENT_TEXT, VOICES, speak

SAMPLE_RATE = 16_000


@dataclass
class Tally:
    right: int = 0
    wrong: int = 0
    anonymous: int = 0
    strangers: int = 0
    false_accepts: int = 0
    notes: list[str] = field(default_factory=list)  # who was named wrongly, or named as a stranger

    def add(self, other: Tally) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def row(self, name: str) -> str:
        known = self.right + self.wrong + self.anonymous
        accuracy = self.right / known if known else 0.0
        far = self.false_accepts / self.strangers if self.strangers else 0.0
        return (
            f"{name:10s} {known:5d} {self.right:6d} {self.wrong:6d} {self.anonymous:10d} {accuracy:9.1%}"
            f" {self.strangers:10d} {self.false_accepts:14d} {far:8.1%}"
        )


def judge(case: Case, named: Annotation, identified: dict[str, str], enrolled: set[str]) -> Tally:
    """Tally one file: ``named`` is the result's turns, ``identified`` name -> reference speaker enrolled under it."""
    uem = case.uem or Timeline([Segment(0, named.get_timeline().extent().end)])
    reference = case.reference.crop(uem)
    mapping = DiarizationErrorRate(collar=0.0, skip_overlap=False).optimal_mapping(reference, named.crop(uem))
    tally = Tally()
    for label in named.labels():
        truth = mapping.get(label)
        is_named = label in identified
        if truth is not None and truth in enrolled:
            if not is_named:
                tally.anonymous += 1
            elif identified[label] == truth:
                tally.right += 1
            else:
                tally.wrong += 1
                tally.notes.append(f"{case.name}: {truth} named as {identified[label]}")
        else:
            tally.strangers += 1
            tally.false_accepts += is_named
            if is_named:
                tally.notes.append(f"{case.name}: stranger {truth} named as {identified[label]}")
    return tally


def enrol(engine, samples: np.ndarray) -> object:
    result = engine.run(samples, SAMPLE_RATE, JobOptions())
    return make_voiceprint(result, engine.embedding_model)


# (threshold, margin) pairs tried with --sweep; every run is kept, so a sweep costs no more engine time
GRID = [(t / 100, m / 100) for t in range(30, 75, 5) for m in (0, 5, 10, 15, 20)]
SWEEP: dict[tuple[float, float], Tally] = {}


def run(engine, case: Case, known: KnownSpeakers, enrolled_as: dict[str, str]) -> Tally:
    """Diarize ``case`` with ``known`` voiceprints (name -> reference speaker in ``enrolled_as``)."""
    samples, rate = sf.read(str(case.wav), dtype="float32")
    raw = engine.run(samples, rate, JobOptions())
    for threshold, margin in GRID:
        swept = identify(raw, known, threshold, margin)
        tally = judge(case, hypothesis(swept), {n: enrolled_as[n] for n in swept.identified}, set(enrolled_as.values()))
        SWEEP.setdefault((threshold, margin), Tally()).add(tally)
    result = identify(raw, known)
    named = hypothesis(result)
    identified = {name: enrolled_as[name] for name in result.identified}
    return judge(case, named, identified, set(enrolled_as.values()))


def generated_set(engine, enrolled: int) -> Tally:
    """The first ``enrolled`` voices enrolled, sought in every generated conversation."""
    enrolled_as = {f"voice{i}": voice for i, voice in enumerate(VOICES[:enrolled])}
    known = known_speakers([(name, enrol(engine, speak(voice, ENROLMENT_TEXT))) for name, voice in enrolled_as.items()])
    tally = Tally()
    for case in generated_cases():
        tally.add(run(engine, case, known, enrolled_as))
    return tally


def solo_speech(case: Case, speaker: str, samples: np.ndarray, limit: float = 60.0) -> np.ndarray:
    """The speaker's turns where nobody else speaks, end to end, up to ``limit`` seconds."""
    own = case.reference.label_timeline(speaker).support()
    others = Timeline(
        [s for label in case.reference.labels() if label != speaker for s in case.reference.label_timeline(label)]
    ).support()
    solo = own.extrude(others) if len(others) else own
    pieces, total = [], 0
    for segment in solo:
        piece = samples[round(segment.start * SAMPLE_RATE) : round(segment.end * SAMPLE_RATE)]
        pieces.append(piece[: max(0, round(limit * SAMPLE_RATE) - total)])
        total += len(pieces[-1])
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def train_set(engine) -> tuple[Tally, list[str]]:
    cases = train_cases()
    audio = {case.name: sf.read(str(case.wav), dtype="float32")[0] for case in cases}
    # each speaker from the file where they speak most on their own
    best: dict[str, tuple[float, Case]] = {}
    for case in cases:
        for speaker in case.reference.labels():
            seconds = len(solo_speech(case, speaker, audio[case.name])) / SAMPLE_RATE
            if seconds >= 3.0 and seconds > best.get(speaker, (0.0, case))[0]:
                best[speaker] = (seconds, case)
    notes, prints = [], []
    for speaker, (seconds, case) in sorted(best.items()):
        try:
            prints.append((speaker, case.name, enrol(engine, solo_speech(case, speaker, audio[case.name]))))
            notes.append(f"enrolled {speaker} from {case.name} ({seconds:.1f} s on their own)")
        except Exception as exc:  # too short or more than one speaker found: noted, not enrolled
            notes.append(f"could not enrol {speaker} from {case.name}: {exc}")
    tally = Tally()
    for case in cases:
        usable = [(speaker, vp) for speaker, source, vp in prints if source != case.name]
        known = known_speakers(usable)
        tally.add(run(engine, case, known, {speaker: speaker for speaker, _ in usable}))
    return tally, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=["generated", "train"], default=["generated", "train"])
    parser.add_argument(
        "--sweep", action="store_true", help="also print every (threshold, margin) of GRID, all sets together"
    )
    args = parser.parse_args()
    from consumer.engine.pyannote_engine import PyannoteEngine

    engine = PyannoteEngine(Settings.from_env(os.environ).engine)
    engine.load()
    rows, notes = [], []
    if "generated" in args.sets:
        rows.append(("gen 4 of 5", generated_set(engine, 4)))
        rows.append(("gen 2 of 5", generated_set(engine, 2)))
    if "train" in args.sets:
        tally, notes = train_set(engine)
        rows.append(("train", tally))
    print("\n".join(notes))
    print(
        f"{'set':10s} {'known':>5s} {'right':>6s} {'wrong':>6s} {'anonymous':>10s} {'accuracy':>9s} {'strangers':>10s} {'false accepts':>14s} {'FA rate':>8s}"
    )
    for name, tally in rows:
        print(tally.row(name))
    for name, tally in rows:
        for note in tally.notes:
            print(f"{name}: {note}")
    if args.sweep:
        print("\nthreshold margin, then the same columns over all sets")
        for (threshold, margin), tally in SWEEP.items():
            print(tally.row(f"{threshold:.2f} {margin:.2f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Diarization error of the engine on real meetings, pyannote's sample and generated talk.

Scores as pyannote does: DER with no collar, overlapped speech scored, within the UEM
(the whole file where there is none), broken down into missed speech, false alarm and
speaker confusion, plus whether the number of speakers found is the reference's.

Sets (``--sets``): ``train`` (AMI excerpts trn00-trn09 from ``make ami``), ``sample``
(pyannote's bundled 30 s sample) and ``generated`` (espeak-ng conversations of 2-5
voices, 120 s, two seeds each; cached under ``$CACHE_DIR/testdata``).

    python bench/score_der.py [--sets train sample generated] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline
from pyannote.database.util import load_rttm, load_uem
from pyannote.metrics.diarization import DiarizationErrorRate

from consumer.config import Settings
from consumer.engine import EngineResult
from consumer.options import JobOptions
from tests.support.ami import train_files
from tests.support.conversation import conversation
from tests.support.judged_turns import as_annotation

GENERATED_VOICES = (2, 3, 4, 5)
GENERATED_SEEDS = (100, 101)
GENERATED_SECONDS = 120


@dataclass(frozen=True, slots=True)
class Case:
    """One file to score: its audio, reference turns and scored region."""

    set: str
    name: str
    wav: Path
    reference: Annotation
    uem: Timeline | None


@dataclass(frozen=True, slots=True)
class Score:
    """DER components of one file, in seconds of scored reference speech."""

    set: str
    name: str
    total: float
    missed: float
    false_alarm: float
    confusion: float
    speakers_found: int
    speakers_expected: int
    seconds: float

    @property
    def der(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.total if self.total else 0.0


def train_cases() -> list[Case]:
    files, rttm, uem = train_files()
    references, uems = load_rttm(str(rttm)), load_uem(str(uem))
    return [Case("train", f.uri, f.wav, references[f.uri], uems[f.uri]) for f in files]


def sample_cases() -> list[Case]:
    import pyannote.audio

    folder = Path(pyannote.audio.__file__).parent / "sample"
    reference = next(iter(load_rttm(str(folder / "sample.rttm")).values()))
    return [Case("sample", "sample", folder / "sample.wav", reference, None)]


def generated_cases() -> list[Case]:
    cases = []
    for voices in GENERATED_VOICES:
        for seed in GENERATED_SEEDS:
            talk = conversation(voices, GENERATED_SECONDS, seed=seed)
            reference = Annotation()
            for i, turn in enumerate(talk.turns):
                reference[Segment(turn.start, turn.end), i] = turn.speaker
            cases.append(Case("generated", f"{voices}voices-seed{seed}", talk.wav, reference, None))
    return cases


SETS = {"train": train_cases, "sample": sample_cases, "generated": generated_cases}


def hypothesis(result: EngineResult) -> Annotation:
    return as_annotation(result.turns)


def score(case: Case, result: EngineResult) -> Score:
    """pyannote's DER of an engine result (see ``score_hypothesis``)."""
    return score_hypothesis(case, hypothesis(result), result.duration, result.num_speakers, result.inference_seconds)


def score_hypothesis(case: Case, turns: Annotation, duration: float, speakers_found: int, seconds: float) -> Score:
    """pyannote's DER: no collar, overlap scored, within the UEM (else the whole ``duration``)."""
    uem = case.uem or Timeline([Segment(0, duration)])
    components = DiarizationErrorRate(collar=0.0, skip_overlap=False)(case.reference, turns, uem=uem, detailed=True)
    return Score(
        set=case.set,
        name=case.name,
        total=components["total"],
        missed=components["missed detection"],
        false_alarm=components["false alarm"],
        confusion=components["confusion"],
        speakers_found=speakers_found,
        speakers_expected=len(case.reference.crop(uem).labels()),
        seconds=seconds,
    )


def run_engine(cases: list[Case]) -> list[Score]:
    from consumer.engine.pyannote_engine import PyannoteEngine

    engine = PyannoteEngine(Settings.from_env(os.environ).engine)
    engine.load()
    scores = []
    for case in cases:
        samples, rate = sf.read(str(case.wav), dtype="float32")
        scores.append(score(case, engine.run(samples, rate, JobOptions())))
    return scores


def table(scores: list[Score]) -> str:
    """Per-file rows, then one total row per set (DER components summed over files)."""
    lines = [f"{'set':9s} {'file':18s} {'DER':>7s} {'missed':>7s} {'FA':>6s} {'conf':>6s}  speakers  seconds"]
    for s in scores:
        ok = "ok" if s.speakers_found == s.speakers_expected else "  "
        lines.append(
            f"{s.set:9s} {s.name:18s} {s.der:7.2%} {s.missed / s.total:7.2%} {s.false_alarm / s.total:6.2%}"
            f" {s.confusion / s.total:6.2%}  {s.speakers_found}/{s.speakers_expected} {ok}   {s.seconds:6.2f}"
        )
    for name in dict.fromkeys(s.set for s in scores):
        rows = [s for s in scores if s.set == name]
        total = sum(s.total for s in rows)
        right = sum(s.speakers_found == s.speakers_expected for s in rows)
        missed, fa, conf = (sum(getattr(s, k) for s in rows) / total for k in ("missed", "false_alarm", "confusion"))
        lines.append(
            f"{name:9s} {'TOTAL':18s} {missed + fa + conf:7.2%} {missed:7.2%} {fa:6.2%} {conf:6.2%}"
            f"  counts right {right}/{len(rows)}  {sum(s.seconds for s in rows):6.1f} s"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--json", type=Path, help="also write the per-file rows here")
    args = parser.parse_args()
    started = time.perf_counter()
    cases = [case for name in args.sets for case in SETS[name]()]
    scores = run_engine(cases)
    print(table(scores))
    print(f"({time.perf_counter() - started:.0f} s in all)")
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in scores], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

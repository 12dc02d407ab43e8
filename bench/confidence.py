#!/usr/bin/env python3
"""Does a turn's ``confidence`` mean something? How often low- and high-confidence turns are wrong.

Every output turn of the engine (default options, non-exclusive turns) on the scored sets
of ``score_der.py`` is mapped to the reference with pyannote's optimal speaker mapping
(the one DER uses). A turn is *wrong* when less than half of its duration is speech of
the reference speaker it maps to (the rest being another speaker, or no speech: confused
or false alarm); turns outside the UEM are not counted. Prints, per set and in all, how
many turns (and seconds) fall below and above 0.5 confidence and the share of each that
is wrong, then the same in confidence deciles.

    python bench/confidence.py [--sets train generated sample] [--json turns.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import soundfile as sf
from pyannote.core import Segment, Timeline
from score_der import SETS, Case

from consumer.config import Settings
from consumer.engine import EngineResult
from consumer.options import JobOptions
from tests.support.judged_turns import right_shares


@dataclass(frozen=True, slots=True)
class Turn:
    """One output turn, how sure the engine was, and whether it was right."""

    set: str
    file: str
    start: float
    end: float
    confidence: float
    right_share: float  # of its duration, speech of the reference speaker it maps to

    @property
    def wrong(self) -> bool:
        return self.right_share < 0.5


def judged_turns(case: Case, result: EngineResult) -> list[Turn]:
    """The result's turns inside the UEM, each with the share of it that the mapped reference speaker covers."""
    uem = case.uem or Timeline([Segment(0, result.duration)])
    turns = []
    for turn, share in right_shares(result.turns, case.reference, uem):
        assert turn.confidence is not None, "the engine gave no confidence"
        turns.append(Turn(case.set, case.name, turn.start, turn.end, turn.confidence, share))
    return turns


def table(turns: list[Turn]) -> str:
    """Wrong shares below and above 0.5, per set and in all, then by decile."""
    lines = [f"{'set':10s} {'confidence':12s} {'turns':>6s} {'seconds':>8s} {'wrong':>7s} {'wrong s':>8s}"]

    def row(name: str, label: str, rows: list[Turn]) -> str:
        seconds = sum(t.end - t.start for t in rows)
        wrong = [t for t in rows if t.wrong]
        wrong_seconds = sum(t.end - t.start for t in wrong)
        share = len(wrong) / len(rows) if rows else 0.0
        seconds_share = wrong_seconds / seconds if seconds else 0.0
        return f"{name:10s} {label:12s} {len(rows):6d} {seconds:8.1f} {share:7.1%} {seconds_share:8.1%}"

    for name in [*dict.fromkeys(t.set for t in turns), "all"]:
        rows = [t for t in turns if name in ("all", t.set)]
        lines.append(row(name, "< 0.5", [t for t in rows if t.confidence < 0.5]))
        lines.append(row(name, ">= 0.5", [t for t in rows if t.confidence >= 0.5]))
    lines.append("")
    for decile in range(10):
        low, high = decile / 10, (decile + 1) / 10
        rows = [t for t in turns if low <= t.confidence < high or (decile == 9 and t.confidence == 1.0)]
        lines.append(row("all", f"[{low:.1f}, {high:.1f})", rows))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=["train", "generated", "sample"])
    parser.add_argument("--json", type=Path, help="also write every judged turn here")
    args = parser.parse_args()
    from consumer.engine.pyannote_engine import PyannoteEngine

    engine = PyannoteEngine(Settings.from_env(os.environ).engine)
    engine.load()
    turns: list[Turn] = []
    for name in args.sets:
        for case in SETS[name]():
            samples, rate = sf.read(str(case.wav), dtype="float32")
            turns += judged_turns(case, engine.run(samples, rate, JobOptions()))
    print(table(turns))
    if args.json:
        args.json.write_text(json.dumps([asdict(t) for t in turns], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A generated conversation whose every word has a known speaker and time, for transcript tests.

Each word is spoken on its own by espeak-ng and laid end to end with short gaps, so the
word times are exact by construction of the audio (not estimated); turns of one to two
sentences alternate between clearly different voices, as in ``conversation``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.support.conversation import SAMPLE_RATE, SENTENCES, VOICES, speak


@dataclass(frozen=True, slots=True)
class SpokenWord:
    """One word of the reference: its text, time and voice."""

    start: float
    end: float
    text: str
    speaker: str


@dataclass(frozen=True, slots=True)
class SpokenSentence:
    """One sentence of the reference, as a transcriber would give it as a segment."""

    start: float
    end: float
    words: tuple[SpokenWord, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def spoken_conversation(
    path: Path, num_speakers: int = 3, sentences: int = 14, seed: int = 3
) -> tuple[SpokenSentence, ...]:
    """Write the conversation to ``path`` (16 kHz WAV) and return its sentences with word times."""
    rng = random.Random(seed)
    voices = VOICES[:num_speakers]
    cache: dict[tuple[str, str], np.ndarray] = {}
    pieces = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)]
    position = 0.5
    out: list[SpokenSentence] = []
    previous = None
    while len(out) < sentences:
        voice = rng.choice([v for v in voices if v != previous])
        previous = voice
        for _ in range(rng.randint(1, 2)):
            words = []
            for text in rng.choice(SENTENCES).split():
                if (voice, text) not in cache:
                    cache[(voice, text)] = speak(voice, text)
                audio = cache[(voice, text)]
                gap = np.zeros(int(0.06 * SAMPLE_RATE), np.float32)
                words.append(SpokenWord(round(position, 3), round(position + len(audio) / SAMPLE_RATE, 3), text, voice))
                pieces += [audio, gap]
                position += (len(audio) + len(gap)) / SAMPLE_RATE
            out.append(SpokenSentence(words[0].start, words[-1].end, tuple(words)))
            pause = np.zeros(int(0.25 * SAMPLE_RATE), np.float32)
            pieces.append(pause)
            position += len(pause) / SAMPLE_RATE
        pause = np.zeros(int(rng.uniform(0.4, 1.0) * SAMPLE_RATE), np.float32)
        pieces.append(pause)
        position += len(pause) / SAMPLE_RATE
    samples = np.concatenate(pieces)
    samples += np.random.default_rng(seed).standard_normal(len(samples)).astype(np.float32) * 1e-3
    sf.write(str(path), samples, SAMPLE_RATE, subtype="PCM_16")
    return tuple(out)


def verbose_json(sentences: tuple[SpokenSentence, ...]) -> dict[str, object]:
    """The reference as OpenAI's ``verbose_json`` with word timestamps (no speakers, of course)."""
    return {
        "task": "transcribe",
        "text": " ".join(s.text for s in sentences),
        "segments": [{"id": i, "start": s.start, "end": s.end, "text": s.text} for i, s in enumerate(sentences)],
        "words": [{"word": w.text, "start": w.start, "end": w.end} for s in sentences for w in s.words],
    }


def srt(sentences: tuple[SpokenSentence, ...]) -> str:
    """The reference as SubRip cues, one per sentence."""

    def stamp(seconds: float) -> str:
        millis = round(seconds * 1000)
        return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"

    return "".join(f"{i}\n{stamp(s.start)} --> {stamp(s.end)}\n{s.text}\n\n" for i, s in enumerate(sentences, 1))

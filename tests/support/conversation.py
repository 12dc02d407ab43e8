"""Generated multi-speaker conversations with exact reference turns, for tests and benchmarks.

Utterances are spoken by espeak-ng (Debian package) in clearly different voices, trimmed
to their speech, and laid end to end with random pauses, so the reference turns are
known to the sample. Results are cached as WAV + RTTM under ``$CACHE_DIR/testdata``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from consumer.config import cache_dir as configured_cache_dir

SAMPLE_RATE = 16_000
# espeak-ng voices whose CAM++ embeddings are clearly apart (cross-voice cosine <= 0.65
# against >= 0.88 within a voice); plain male variants embed almost identically.
VOICES = ("en-us", "en+f3", "en+klatt2", "en+m7", "en-us+f5")
SENTENCES = (
    "Good morning everyone, let us look at the numbers from last week.",
    "I think the second option is cheaper, but it will take longer to build.",
    "Could you send me the report before the meeting on Thursday?",
    "The weather was terrible, so the delivery arrived two days late.",
    "We should ask the customer what they really need from this feature.",
    "That sounds reasonable to me, as long as the budget stays the same.",
    "Last time we tried this, the servers ran out of memory after an hour.",
    "My main concern is the testing, we never have enough time for it.",
    "Please write the summary in plain words so that everyone can follow.",
    "The new office has a lot more light and the coffee is much better.",
    "Let me check the calendar and come back to you this afternoon.",
    "If we split the work in two, each team can finish by the end of May.",
    "I did not expect so many questions about the pricing page.",
    "The training data looks clean, but the labels need another review.",
    "We can always roll back the change if something goes wrong tonight.",
    "Honestly I prefer the shorter version, it reads much faster.",
)

# what an enrolled voice says in its clip (about 9 s): none of SENTENCES, so a voice is
# never sought in the words it was enrolled with
ENROLMENT_TEXT = (
    "Hello, this is my voice for the enrolment. I am reading a few plain sentences "
    "so that the service can learn how I sound, and then I will stop talking."
)


@dataclass(frozen=True, slots=True)
class ReferenceTurn:
    """Who speaks when in a generated conversation."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """A generated WAV file and its reference turns."""

    wav: Path
    turns: tuple[ReferenceTurn, ...]

    @property
    def speakers(self) -> set[str]:
        """The distinct speakers of the reference."""
        return {t.speaker for t in self.turns}

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return sf.info(str(self.wav)).duration


def cache_dir() -> Path:
    """``$CACHE_DIR/testdata`` (the project's cache folder)."""
    return configured_cache_dir(os.environ) / "testdata"


def speak(voice: str, text: str) -> np.ndarray:
    """``text`` spoken by espeak-ng ``voice``, trimmed to its speech, 16 kHz float32."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (make system-deps installs it)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    samples = resample_poly(samples, SAMPLE_RATE, rate).astype(np.float32)
    return _trim(samples)


def _trim(samples: np.ndarray, frame: int = 160, floor_db: float = -35.0) -> np.ndarray:
    """Cut leading and trailing silence so that reference turns start and end on speech."""
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy > energy.max() + floor_db)
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


def _turn(
    rng: random.Random, voice: str, pool: dict[tuple[str, str], np.ndarray], fewest: int, most: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One turn of ``voice``: ``fewest``..``most`` (utterance, gap) pairs, sentences and gaps drawn
    from ``rng``; each (voice, sentence) is spoken once and kept in ``pool``."""
    pairs = []
    for _ in range(rng.randint(fewest, most)):
        sentence = rng.choice(SENTENCES)
        if (voice, sentence) not in pool:
            pool[(voice, sentence)] = speak(voice, sentence)
        pairs.append((pool[(voice, sentence)], np.zeros(int(rng.uniform(0.1, 0.25) * SAMPLE_RATE), np.float32)))
    return pairs


def conversation(
    num_speakers: int,
    duration: float,
    seed: int = 0,
    pause: tuple[float, float] = (0.4, 1.2),
    min_turn_utterances: int = 1,
    max_turn_utterances: int = 3,
    noise_db: float = -60.0,
) -> Conversation:
    """A cached conversation of about ``duration`` seconds between ``num_speakers`` voices.

    Speakers take turns in random order (never the same twice in a row), each turn one
    to three sentences; a little noise keeps the pauses from being digital silence.
    """
    if not 1 <= num_speakers <= len(VOICES):
        raise ValueError(f"num_speakers must be 1..{len(VOICES)}")
    params = dict(
        n=num_speakers,
        d=duration,
        seed=seed,
        pause=pause,
        lo=min_turn_utterances,
        hi=max_turn_utterances,
        noise=noise_db,
        voices=VOICES[:num_speakers],
        v=2,
    )
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_dir() / f"conversation-{num_speakers}spk-{int(duration)}s-{key}"
    wav, rttm = target.with_suffix(".wav"), target.with_suffix(".rttm")
    if wav.exists() and rttm.exists():
        return Conversation(wav, read_rttm(rttm))

    rng = random.Random(seed)
    voices = VOICES[:num_speakers]
    pool: dict[tuple[str, str], np.ndarray] = {}
    pieces: list[np.ndarray] = []
    turns: list[ReferenceTurn] = []
    position, previous = 0.5, None
    pieces.append(np.zeros(int(0.5 * SAMPLE_RATE), np.float32))
    while position < duration:
        voice = rng.choice([v for v in voices if v != previous] or list(voices))
        previous = voice
        start = position
        for utterance, gap in _turn(rng, voice, pool, min_turn_utterances, max_turn_utterances):
            pieces += [utterance, gap]
            position += (len(utterance) + len(gap)) / SAMPLE_RATE
        turns.append(ReferenceTurn(round(start, 3), round(position - len(gap) / SAMPLE_RATE, 3), voice))
        silence = np.zeros(int(rng.uniform(*pause) * SAMPLE_RATE), np.float32)
        pieces.append(silence)
        position += len(silence) / SAMPLE_RATE

    samples = np.concatenate(pieces)
    noise = np.random.default_rng(seed).standard_normal(len(samples)).astype(np.float32)
    samples = samples + noise * 10 ** (noise_db / 20)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(wav), samples, SAMPLE_RATE, subtype="PCM_16")
    write_rttm(rttm, target.name, turns)
    return Conversation(wav, tuple(turns))


def conversation_with_guest(
    duration: float,
    guest_seconds: float,
    appearances: int = 3,
    num_speakers: int = 4,
    seed: int = 0,
    noise_db: float = -60.0,
) -> Conversation:
    """A cached conversation of about ``duration`` seconds between ``num_speakers`` voices, and a
    guest (the next voice of ``VOICES``) who speaks about ``guest_seconds`` in all, in
    ``appearances`` stretches spread evenly over the file, taking every other turn there.

    Written a turn at a time, so a day of audio needs no more memory than a minute.
    """
    if not 1 <= num_speakers < len(VOICES):
        raise ValueError(f"num_speakers must be 1..{len(VOICES) - 1}")
    params = dict(d=duration, g=guest_seconds, a=appearances, n=num_speakers, seed=seed, noise=noise_db, v=1)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_dir() / f"guest-{num_speakers}spk-{int(duration)}s-{int(guest_seconds)}g-{key}"
    wav, rttm = target.with_suffix(".wav"), target.with_suffix(".rttm")
    if wav.exists() and rttm.exists():
        return Conversation(wav, read_rttm(rttm))

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    hosts, guest = VOICES[:num_speakers], VOICES[num_speakers]
    pool: dict[tuple[str, str], np.ndarray] = {}
    starts = [duration * (k + 1) / (appearances + 1) for k in range(appearances)]
    quota = [guest_seconds / appearances] * appearances  # guest speech left per appearance
    turns: list[ReferenceTurn] = []
    position, previous = 0.5, None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = wav.with_suffix(".partial.wav")
    with sf.SoundFile(str(partial), "w", SAMPLE_RATE, 1, "PCM_16") as out:

        def write(samples: np.ndarray) -> None:
            out.write(samples + noise.standard_normal(len(samples)).astype(np.float32) * 10 ** (noise_db / 20))

        write(np.zeros(int(0.5 * SAMPLE_RATE), np.float32))
        while position < duration:
            appearance = next((k for k, s in enumerate(starts) if s <= position and quota[k] > 0), None)
            if appearance is not None and previous != guest:
                voice = guest
            else:
                voice = rng.choice([v for v in hosts if v != previous] or list(hosts))
            previous, start = voice, position
            for utterance, gap in _turn(rng, voice, pool, 1, 3):
                write(np.concatenate([utterance, gap]))
                position += (len(utterance) + len(gap)) / SAMPLE_RATE
            end = round(position - len(gap) / SAMPLE_RATE, 3)
            turns.append(ReferenceTurn(round(start, 3), end, voice))
            if voice == guest and appearance is not None:
                quota[appearance] -= end - start
            silence = np.zeros(int(rng.uniform(0.4, 1.2) * SAMPLE_RATE), np.float32)
            write(silence)
            position += len(silence) / SAMPLE_RATE
    partial.rename(wav)
    write_rttm(rttm, target.name, turns)
    return Conversation(wav, tuple(turns))


def write_rttm(path: Path, uri: str, turns: list[ReferenceTurn] | tuple[ReferenceTurn, ...]) -> None:
    """Write reference turns as RTTM."""
    path.write_text(
        "".join(f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n" for t in turns)
    )


def read_rttm(path: Path) -> tuple[ReferenceTurn, ...]:
    """Read RTTM turns back."""
    turns = []
    for line in path.read_text().splitlines():
        fields = line.split()
        start, length = float(fields[3]), float(fields[4])
        turns.append(ReferenceTurn(start, round(start + length, 3), fields[7]))
    return tuple(turns)

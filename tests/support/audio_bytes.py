"""Audio files built in memory for tests: valid variants and broken ones."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf


def tone(seconds: float, rate: int = 16_000, channels: int = 1, amplitude: float = 0.3) -> np.ndarray:
    """A 440 Hz sine (frames, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    mono = (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1)


def encode(samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    """``samples`` written by soundfile into an in-memory file."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def with_data_size(wav: bytes, declared: int) -> bytes:
    """A copy of a soundfile-written WAV whose ``data`` chunk claims ``declared`` bytes."""
    offset = wav.index(b"data") + 4
    return wav[:offset] + struct.pack("<I", declared) + wav[offset + 4 :]

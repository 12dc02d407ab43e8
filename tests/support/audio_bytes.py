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


def with_flac_length(flac: bytes, total_samples: int) -> bytes:
    """A copy of a soundfile-written FLAC whose STREAMINFO declares ``total_samples`` (0: unknown)."""
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0, "STREAMINFO must be the first metadata block"
    # STREAMINFO starts at 8; its bytes 10..17 hold rate (20 bits), channels (3), depth (5), samples (36)
    packed = int.from_bytes(flac[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | total_samples
    return flac[:18] + packed.to_bytes(8, "big") + flac[26:]

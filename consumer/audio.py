"""Decode uploaded audio into what the engine expects: mono float32 at 16 kHz.

Decoding is done with soundfile (libsndfile) from bytes or a binary stream, block by
block, so a long multichannel file is downmixed without holding all its channels in
memory. Every way an input can be unusable maps to one error code (see ``errors``).
Nothing here imports torch.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from typing import IO

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from consumer.config import AudioLimits
from consumer.errors import (
    AudioTooLongError,
    AudioTooShortError,
    CorruptAudioError,
    NonFiniteAudioError,
    NotAudioError,
    PayloadTooLargeError,
    UnsupportedSampleRateError,
)

TARGET_SAMPLE_RATE = 16_000
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
SUPPORTED_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "FLAC", "OGG"})
_BLOCK_FRAMES = 1 << 18

# Leading bytes of the containers we accept: a file that starts like one of them but
# fails to decode is corrupt, anything else is not audio at all.
_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"riff", b"fLaC", b"OggS")


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """Mono float32 samples at ``sample_rate`` plus what the original file was."""

    samples: np.ndarray
    sample_rate: int
    original_sample_rate: int
    original_channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def decode(source: bytes | IO[bytes], limits: AudioLimits) -> DecodedAudio:
    """Decode, downmix, validate and resample ``source`` to 16 kHz mono float32.

    ``source`` is the whole file as bytes, or a seekable binary stream. Raises one of the
    audio errors of ``consumer.errors``; never anything else for bad input.
    """
    stream = _as_stream(source, limits.max_bytes)
    head = stream.read(12)
    stream.seek(0)
    if not head:
        raise AudioTooShortError("the file is empty")
    looks_like_audio = head.startswith(_MAGIC)
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        _check_wav_length(stream)
    try:
        sound = sf.SoundFile(stream)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        if looks_like_audio:
            raise CorruptAudioError("the audio header cannot be read") from None
        raise NotAudioError("the file is not in a supported audio format (WAV, FLAC or OGG)") from None
    with sound:
        if sound.format not in SUPPORTED_FORMATS:
            raise NotAudioError(f"{sound.format} is not supported; send WAV, FLAC or OGG")
        return _read(sound, limits)


def _as_stream(source: bytes | IO[bytes], max_bytes: int) -> IO[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:
            raise PayloadTooLargeError(f"the file is larger than {max_bytes} bytes")
        return io.BytesIO(source)
    source.seek(0, io.SEEK_END)
    size = source.tell()
    source.seek(0)
    if size > max_bytes:
        raise PayloadTooLargeError(f"the file is larger than {max_bytes} bytes")
    return source


def _check_wav_length(stream: IO[bytes]) -> None:
    """Refuse a WAV whose ``data`` chunk declares more bytes than the file holds.

    libsndfile quietly shortens such a file to what is there, which would turn a
    truncated upload into a shorter, wrong result instead of an error.
    """
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    position = 12
    try:
        while position + 8 <= size:
            stream.seek(position)
            chunk_id = stream.read(4)
            (chunk_size,) = struct.unpack("<I", stream.read(4))
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF are what streaming writers leave when the length is unknown
                declared_unknown = chunk_size in (0, 0xFFFFFFFF)
                if not declared_unknown and position + 8 + chunk_size > size:
                    raise CorruptAudioError(
                        f"the audio is truncated: the header declares {chunk_size} bytes of "
                        f"samples, the file holds {size - position - 8}"
                    )
                return
            position += 8 + chunk_size + (chunk_size & 1)  # chunks are word-aligned
    finally:
        stream.seek(0)


def _read(sound: sf.SoundFile, limits: AudioLimits) -> DecodedAudio:
    rate, channels, frames = sound.samplerate, sound.channels, sound.frames
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedSampleRateError(f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if channels < 1:
        raise CorruptAudioError("the file declares no channels")
    # The header's length is checked before decoding so that a file claiming hours of
    # audio is refused without reading it.
    if frames / rate > limits.max_seconds:
        raise AudioTooLongError(
            f"the audio lasts {frames / rate:.1f} s, more than the maximum {limits.max_seconds:.0f} s"
        )
    mono = np.empty(frames, dtype=np.float32)
    filled = 0
    try:
        for block in sound.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
            n = min(len(block), frames - filled)
            if n <= 0:
                break
            down = block[:n].mean(axis=1, dtype=np.float32) if channels > 1 else block[:n, 0]
            if not np.isfinite(down).all():
                raise NonFiniteAudioError("the audio contains NaN or infinite samples")
            mono[filled : filled + n] = down
            filled += n
    except sf.LibsndfileError as exc:
        raise CorruptAudioError(f"the audio data cannot be decoded: {exc}") from None
    if filled < frames:
        raise CorruptAudioError(f"the audio is truncated: the header declares {frames} frames, {filled} were read")
    if frames / rate < limits.min_seconds:
        raise AudioTooShortError(f"the audio lasts {frames / rate:.3f} s, less than the minimum {limits.min_seconds} s")
    return DecodedAudio(
        samples=_resample(mono, rate),
        sample_rate=TARGET_SAMPLE_RATE,
        original_sample_rate=rate,
        original_channels=channels,
    )


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == TARGET_SAMPLE_RATE:
        return samples
    g = math.gcd(rate, TARGET_SAMPLE_RATE)
    # polyphase resampling with scipy's default Kaiser window: band-limited, no torch
    out = resample_poly(samples, TARGET_SAMPLE_RATE // g, rate // g)
    return np.ascontiguousarray(out, dtype=np.float32)

"""Decoding memory is the 16 kHz result plus a constant, whatever the source's rate, channels or compression.

Measured with tracemalloc, to which numpy reports its buffers: the peak of traced memory
while ``decode`` runs, against the size of what it returns (16 kHz mono float32). The
input's bytes are made before tracing starts and are not counted: they are the caller's.
"""

import io
import struct
import tracemalloc

import numpy as np
import pytest

from consumer.audio import BLOCK_BYTES, decode
from consumer.config import AudioLimits
from tests.support import media
from tests.support.audio_bytes import encode, with_flac_length
from tests.support.hostile import long_silent_flac

# One block in flight costs at most: the decoded block (BLOCK_BYTES), its downmix and
# finiteness mask (a quarter block each at most, for 2+ channels), the resampler's copy of
# it with its history (one block) and the resampled block (two at most, when upsampling
# 8 -> 16 kHz): 4.5 blocks. The result's own spare room is inside the 1.3 factor.
BLOCK_OVERHEAD = 5 * BLOCK_BYTES
RATIO = 1.3


def _peak(data: bytes) -> tuple[int, np.ndarray]:
    """Peak traced bytes while decoding ``data`` at the default limits, and the samples."""
    stream = io.BytesIO(data)
    tracemalloc.start()
    try:
        audio = decode(stream, AudioLimits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with audio.samples as samples:  # on disk (SampleFile); read back for the checks
        return peak, samples[:]


def _assert_bounded(peak: int, samples: np.ndarray, seconds: float) -> None:
    assert len(samples) == round(seconds * 16_000)
    bound = RATIO * samples.nbytes + BLOCK_OVERHEAD
    assert peak <= bound, f"peak {peak / 2**20:.1f} MiB for {samples.nbytes / 2**20:.1f} MiB of output"


def _wav(frames: int, rate: int, channels: int) -> bytes:
    """16-bit WAV: a 440 Hz tone on every channel, plus a little noise that differs per channel."""
    rng = np.random.default_rng(3)
    t = np.arange(frames) / rate
    tone = (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    samples = tone[:, None] + rng.integers(-200, 200, (frames, channels), dtype=np.int16)
    data = samples.astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return header + b"data" + struct.pack("<I", len(data)) + data


@pytest.mark.parametrize("declared", [True, False], ids=["declared length", "STREAMINFO length 0"])
def test_ten_minutes_of_192_khz_flac(declared):
    """363 KB of FLAC that decodes to 115 M samples at 192 kHz: was 13x its 16 kHz output."""
    flac = long_silent_flac(600, rate=192_000)
    peak, samples = _peak(flac if declared else with_flac_length(flac, 0))
    _assert_bounded(peak, samples, 600)


def test_1024_channels():
    """2 s in 1024 channels (64 MiB): was a 128 MiB block of float32 for 125 KiB of output."""
    data = _wav(32_000, 16_000, 1024)
    peak, samples = _peak(data)
    _assert_bounded(peak, samples, 2)
    # the downmix is the mean of the channels: the tone, with the per-channel noise averaged out
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(3000 / 32768 / np.sqrt(2), rel=0.02)


def test_48_khz_stereo():
    """3 minutes of 48 kHz stereo (33 MiB): was 4x its output."""
    peak, samples = _peak(_wav(3 * 60 * 48_000, 48_000, 2))
    _assert_bounded(peak, samples, 180)
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(3000 / 32768 / np.sqrt(2), rel=0.02)


def test_8_khz_upsampled():
    """Upsampling doubles each block: still within the bound (10 minutes at 8 kHz)."""
    peak, samples = _peak(encode(np.zeros((600 * 8_000, 1), np.float32), 8_000, fmt="FLAC"))
    _assert_bounded(peak, samples, 600)


@pytest.mark.parametrize("kind", ["mp3", "m4a", "webm", "opus"])
def test_five_minutes_of_compressed_stereo(kind):
    """5 minutes of 48 kHz stereo (6x its output if held whole) through FFmpeg (PyAV): frames are gathered into blocks, never the whole file.

    FFmpeg's own buffers (a few frames, its demuxer's read buffer) are outside tracemalloc;
    they do not grow with the file's length.
    """
    peak, samples = _peak(media.long_sine(kind, 300))
    # AAC keeps up to one frame of encoder delay (see test_audio_formats)
    assert abs(len(samples) - 300 * 16_000) <= 1024 * 16_000 // 48_000 + 1
    bound = RATIO * samples.nbytes + BLOCK_OVERHEAD
    assert peak <= bound, f"peak {peak / 2**20:.1f} MiB for {samples.nbytes / 2**20:.1f} MiB of output"

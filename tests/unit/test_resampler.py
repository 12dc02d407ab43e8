"""Streaming resampling gives what resample_poly gives on the whole signal, block boundaries or not."""

import io
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from consumer.audio import decode
from consumer.audio.resampler import StreamResampler
from consumer.config import AudioLimits

TOLERANCE = 1e-6  # float32 sums of the same terms; in practice the results are bit-identical


def _whole(x: np.ndarray, rate: int) -> np.ndarray:
    """What decoding did before it streamed: resample_poly over the whole signal."""
    g = math.gcd(rate, 16_000)
    return resample_poly(x, 16_000 // g, rate // g).astype(np.float32)


def _streamed(x: np.ndarray, rate: int, block_sizes: np.ndarray) -> np.ndarray:
    resampler = StreamResampler(rate, 16_000)
    pieces, start = [], 0
    for size in block_sizes:
        pieces.append(resampler.feed(x[start : start + size]))
        start += size
    assert start >= len(x)
    pieces.append(resampler.finish())
    return np.concatenate(pieces)


@pytest.mark.parametrize("seed", range(40))
def test_random_rates_and_blocks_match_resample_poly(seed):
    rng = np.random.default_rng(seed)
    rate = int(rng.choice([8_000, 11_025, 22_050, 44_100, 48_000, 96_000, 192_000, rng.integers(8_000, 192_001)]))
    x = rng.normal(0, 0.3, int(rng.integers(1, 40_000))).astype(np.float32)
    blocks = rng.integers(1, 6_000, len(x))
    blocks = blocks[: np.searchsorted(np.cumsum(blocks), len(x)) + 1]
    expected = _whole(x, rate)
    got = _streamed(x, rate, blocks)
    assert len(got) == len(expected) == StreamResampler(rate, 16_000).output_length(len(x))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_nothing_in_nothing_out():
    assert len(_streamed(np.zeros(0, np.float32), 44_100, np.array([], dtype=int))) == 0


def test_equal_rates_pass_blocks_through():
    x = np.arange(100, dtype=np.float32)
    assert np.array_equal(_streamed(x, 16_000, np.array([30, 70])), x)


def _speech(tmp_path: Path, rate: int, channels: int) -> bytes:
    """A sentence spoken by espeak-ng, converted by sox to ``rate`` and ``channels`` (16-bit WAV)."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (make system-deps installs it)")
    spoken, converted = tmp_path / "spoken.wav", tmp_path / "converted.wav"
    sentence = "Please write the summary in plain words so that everyone can follow."
    subprocess.run(["espeak-ng", "-w", str(spoken), sentence], check=True, capture_output=True)
    # to a file, not a pipe: on a pipe sox cannot go back to write the real data size
    subprocess.run(
        ["sox", str(spoken), "-r", str(rate), "-c", str(channels), "-b", "16", str(converted)],
        check=True,
        capture_output=True,
    )
    return converted.read_bytes()


@pytest.mark.parametrize(("rate", "channels"), [(8_000, 1), (22_050, 1), (44_100, 2), (48_000, 2), (192_000, 1)])
def test_decoded_speech_matches_whole_file_resampling(tmp_path, rate, channels):
    """Real speech through decode (blocks of 1 MiB, so several per file at high rates)."""
    wav = _speech(tmp_path, rate, channels)
    samples, read_rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    assert read_rate == rate and samples.shape[1] == channels
    mono = samples.mean(axis=1, dtype=np.float32)
    expected = _whole(mono, rate)
    got = decode(wav, AudioLimits()).samples
    assert len(got) == len(expected)
    assert np.sqrt(np.mean(expected**2)) > 0.01  # it is speech, not silence
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_speech_in_small_blocks_matches_whole_file_resampling(tmp_path):
    samples, _ = sf.read(io.BytesIO(_speech(tmp_path, 44_100, 1)), dtype="float32")
    rng = np.random.default_rng(5)
    blocks = rng.integers(1, 2_000, len(samples))
    blocks = blocks[: np.searchsorted(np.cumsum(blocks), len(samples)) + 1]
    np.testing.assert_allclose(_streamed(samples, 44_100, blocks), _whole(samples, 44_100), rtol=0, atol=TOLERANCE)

"""Decoding accepts the formats users send and refuses broken input with one code each."""

import io
import re
import struct
from collections.abc import Iterator

import numpy as np
import pytest

from consumer.audio import BLOCK_BYTES, decode, decode_blocks
from consumer.config import AudioLimits
from consumer.errors import ServiceError
from tests.support.audio_bytes import encode, tone, with_data_size, with_flac_length
from tests.support.hostile import long_silent_flac

LIMITS = AudioLimits(max_bytes=20 * 1024 * 1024, max_seconds=60.0)


@pytest.mark.parametrize(
    ("label", "data", "rate", "channels"),
    [
        ("16-bit", encode(tone(2)), 16_000, 1),
        ("8-bit unsigned", encode(tone(2), subtype="PCM_U8"), 16_000, 1),
        ("24-bit", encode(tone(2), subtype="PCM_24"), 16_000, 1),
        ("32-bit float", encode(tone(2), subtype="FLOAT"), 16_000, 1),
        ("64-bit float", encode(tone(2), subtype="DOUBLE"), 16_000, 1),
        ("8 kHz", encode(tone(2, 8_000), 8_000), 8_000, 1),
        ("44.1 kHz stereo", encode(tone(2, 44_100, 2), 44_100), 44_100, 2),
        ("96 kHz", encode(tone(2, 96_000), 96_000), 96_000, 1),
        ("6 channels", encode(tone(2, 48_000, 6), 48_000), 48_000, 6),
        ("FLAC", encode(tone(2), fmt="FLAC"), 16_000, 1),
        ("OGG Vorbis", encode(tone(2), fmt="OGG", subtype="VORBIS"), 16_000, 1),
        ("RF64", encode(tone(2, 48_000, 2), 48_000, fmt="RF64"), 48_000, 2),
        ("W64", encode(tone(2, 44_100), 44_100, fmt="W64"), 44_100, 1),
    ],
)
def test_accepted_inputs_become_16k_mono_float32(label, data, rate, channels):
    audio = decode(data, LIMITS)
    assert audio.sample_rate == 16_000
    samples = audio.samples[:]  # on disk (SampleFile), read back
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert audio.original_sample_rate == rate and audio.original_channels == channels
    # FFmpeg ends libsndfile's Ogg Vorbis 256 samples (16 ms) early: its end trimming, not a shift
    assert audio.duration == pytest.approx(2.0, abs=0.02 if label == "OGG Vorbis" else 0.01)
    # the tone survives resampling and downmixing with its level
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_streams_are_accepted_like_bytes():
    audio = decode(io.BytesIO(encode(tone(1))), LIMITS)
    assert audio.duration == pytest.approx(1.0)


WAV = encode(tone(2))
RF64 = encode(tone(2), fmt="RF64")
W64 = encode(tone(2), fmt="W64")
# the same with the whole-file size field at 0, so that only the data size tells
RF64_NO_SIZE = RF64[:20] + bytes(8) + RF64[28:]  # ds64's RIFF size
W64_NO_SIZE = W64[:16] + bytes(8) + W64[24:]  # the riff chunk's size
NAN = tone(2)
NAN[100, 0] = np.nan
INF = tone(2)
INF[-1, 0] = np.inf


REFUSED = [
    ("empty", b"", "audio_too_short"),
    ("zero frames", encode(tone(0)), "audio_too_short"),
    ("1 ms", encode(tone(0.001)), "audio_too_short"),
    ("0.4 s", encode(tone(0.4)), "audio_too_short"),
    ("too long", encode(tone(61, 8_000), 8_000), "audio_too_long"),
    ("truncated header", WAV[:30], "corrupt_audio"),
    ("truncated data", WAV[: len(WAV) // 2], "corrupt_audio"),
    ("huge declared size", with_data_size(WAV, 2**31), "corrupt_audio"),
    ("truncated FLAC", encode(tone(2), fmt="FLAC")[:2000], "corrupt_audio"),
    ("truncated RF64", RF64[: len(RF64) // 2], "corrupt_audio"),
    ("RF64 cut in its header", RF64[:100], "corrupt_audio"),
    ("RF64 cut by 2 bytes", RF64[:-2], "corrupt_audio"),
    ("RF64 without a file size, cut", RF64_NO_SIZE[: len(RF64) // 2], "corrupt_audio"),
    ("truncated W64", W64[: len(W64) // 2], "corrupt_audio"),
    ("W64 cut in its header", W64[:100], "corrupt_audio"),
    ("W64 cut by 2 bytes", W64[:-2], "corrupt_audio"),
    ("W64 without a file size, cut", W64_NO_SIZE[: len(W64) // 2], "corrupt_audio"),
    ("text", b"hello, this is not audio at all\n" * 20, "not_audio"),
    ("PNG", b"\x89PNG\r\n\x1a\n" + bytes(200), "not_audio"),
    ("ZIP", b"PK\x03\x04" + bytes(200), "not_audio"),
    ("MP3 frame headers, no frames", b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 300, "corrupt_audio"),
    ("NaN samples", encode(NAN, subtype="FLOAT"), "non_finite_samples"),
    ("inf samples", encode(INF, subtype="FLOAT"), "non_finite_samples"),
    ("1 Hz", encode(tone(10, 1), 1), "unsupported_sample_rate"),
    ("384 kHz", encode(tone(1, 384_000), 384_000), "unsupported_sample_rate"),
]


@pytest.mark.parametrize(("label", "data", "code"), REFUSED, ids=[label for label, _, _ in REFUSED])
def test_refused_inputs_get_their_error_code(label, data, code):
    with pytest.raises(ServiceError) as caught:
        decode(data, LIMITS)
    assert caught.value.code == code, caught.value.message
    assert not caught.value.retryable


def test_size_limit_is_checked_before_decoding():
    with pytest.raises(ServiceError) as caught:
        decode(encode(tone(2)), AudioLimits(max_bytes=1000))
    assert caught.value.code == "payload_too_large"
    assert caught.value.http_status == 413


@pytest.mark.parametrize("data", [RF64_NO_SIZE, W64_NO_SIZE], ids=["RF64", "W64"])
def test_rf64_and_w64_without_a_file_size_are_decoded(data):
    assert decode(data, LIMITS).duration == pytest.approx(2.0)


@pytest.mark.parametrize("riff_size", [None, 0, 0xFFFF_FFFF])
@pytest.mark.parametrize("data_size", [0, 0xFFFF_FFFF])
def test_streamed_wav_whose_sizes_are_unknown_is_decoded_whole(riff_size, data_size):
    """A WAV written to a pipe cannot go back to fill in its sizes: 0 or 0xFFFFFFFF mean "to the end"."""
    streamed = with_data_size(WAV, data_size)
    if riff_size is not None:
        streamed = streamed[:4] + struct.pack("<I", riff_size) + streamed[8:]
    stream = io.BytesIO(streamed)
    audio = decode(stream, LIMITS)
    np.testing.assert_array_equal(audio.samples[:], decode(WAV, LIMITS).samples[:])
    assert stream.getvalue() == streamed  # the caller's stream is read, never patched


def test_flac_without_a_length_is_decoded_to_its_end():
    """A FLAC whose STREAMINFO says 0 samples (a streaming encoder's "unknown") decodes whole."""
    flac = encode(tone(3, 44_100, 2), 44_100, fmt="FLAC")
    audio = decode(with_flac_length(flac, 0), LIMITS)
    np.testing.assert_array_equal(audio.samples[:], decode(flac, LIMITS).samples[:])
    assert audio.duration == pytest.approx(3.0, abs=1e-3)


def test_flac_without_a_length_stops_at_the_default_limit_while_decoding():
    """The default limit (24 h) and a minute of silence (~2 MB) with no declared length: refused once
    decoding passes the limit (the decoded samples, on disk, are deleted)."""
    limits = AudioLimits()
    flac = with_flac_length(long_silent_flac(limits.max_seconds + 60), 0)
    with pytest.raises(ServiceError) as caught:
        decode(flac, limits)
    assert caught.value.code == "audio_too_long", caught.value.message
    stopped = re.search(r"decoding stopped at ([\d.]+) s", caught.value.message)
    assert stopped and limits.max_seconds < float(stopped.group(1)) < limits.max_seconds + 60, caught.value.message


class _Endless:
    """A block source that never ends, whatever length it declares."""

    sample_rate = 16_000
    channels = 2

    def __init__(self, frames: int | None) -> None:
        self.frames = frames
        self.pulled = 0

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        while True:
            self.pulled += frames
            yield np.full((frames, self.channels), 0.1, np.float32)


@pytest.mark.parametrize("declared", [None, 16_000])
def test_decoding_stops_as_soon_as_the_limit_is_passed(declared):
    source = _Endless(declared)
    with pytest.raises(ServiceError) as caught:
        decode_blocks(source, LIMITS)
    assert caught.value.code == "audio_too_long", caught.value.message
    block = BLOCK_BYTES // (4 * source.channels)
    assert LIMITS.max_seconds * 16_000 < source.pulled <= LIMITS.max_seconds * 16_000 + block

"""Decoding accepts the formats users send and refuses broken input with one code each."""

import io

import numpy as np
import pytest

from consumer.audio import decode
from consumer.config import AudioLimits
from consumer.errors import ServiceError
from tests.support.audio_bytes import encode, tone, with_data_size

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
    ],
)
def test_accepted_inputs_become_16k_mono_float32(label, data, rate, channels):
    audio = decode(data, LIMITS)
    assert audio.sample_rate == 16_000
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.original_sample_rate == rate and audio.original_channels == channels
    assert audio.duration == pytest.approx(2.0, abs=0.01)
    # the tone survives resampling and downmixing with its level
    assert np.sqrt(np.mean(audio.samples**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_streams_are_accepted_like_bytes():
    audio = decode(io.BytesIO(encode(tone(1))), LIMITS)
    assert audio.duration == pytest.approx(1.0)


WAV = encode(tone(2))
NAN = tone(2)
NAN[100, 0] = np.nan
INF = tone(2)
INF[-1, 0] = np.inf


@pytest.mark.parametrize(
    ("label", "data", "code"),
    [
        ("empty", b"", "audio_too_short"),
        ("zero frames", encode(tone(0)), "audio_too_short"),
        ("1 ms", encode(tone(0.001)), "audio_too_short"),
        ("0.4 s", encode(tone(0.4)), "audio_too_short"),
        ("too long", encode(tone(61, 8_000), 8_000), "audio_too_long"),
        ("truncated header", WAV[:30], "corrupt_audio"),
        ("truncated data", WAV[: len(WAV) // 2], "corrupt_audio"),
        ("huge declared size", with_data_size(WAV, 2**31), "corrupt_audio"),
        ("truncated FLAC", encode(tone(2), fmt="FLAC")[:2000], "corrupt_audio"),
        ("text", b"hello, this is not audio at all\n" * 20, "not_audio"),
        ("PNG", b"\x89PNG\r\n\x1a\n" + bytes(200), "not_audio"),
        ("ZIP", b"PK\x03\x04" + bytes(200), "not_audio"),
        ("MP3", b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 300, "not_audio"),
        ("NaN samples", encode(NAN, subtype="FLOAT"), "non_finite_samples"),
        ("inf samples", encode(INF, subtype="FLOAT"), "non_finite_samples"),
        ("1 Hz", encode(tone(10, 1), 1), "unsupported_sample_rate"),
        ("384 kHz", encode(tone(1, 384_000), 384_000), "unsupported_sample_rate"),
    ],
)
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

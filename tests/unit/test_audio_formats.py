"""Compressed audio and video (PyAV's decoders), picked by content, and hostile variants of them.

The media are made at test time with ffmpeg (``tests.support.media``); each input has one
exact answer: a decoded duration, or an error code.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from consumer.audio import decode
from consumer.config import AudioLimits
from consumer.errors import ServiceError
from tests.support import media
from tests.support.audio_bytes import encode, tone

LIMITS = AudioLimits()  # the defaults a deployment runs with: 24 hours, 512 MiB


def _error(data: bytes, audio_stream: int = 0) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        decode(data, LIMITS, audio_stream)
    assert not caught.value.retryable
    return caught.value


def _frequency(samples: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize(
    ("kind", "rate"),
    [("mp3", 44_100), ("m4a", 44_100), ("webm", 48_000), ("opus", 48_000), ("ogg", 44_100), ("adts", 44_100)],
)
def test_compressed_formats_decode_to_the_tone(kind, rate):
    audio = decode(io.BytesIO(media.speech_tone(kind)), LIMITS)
    assert (audio.sample_rate, audio.original_sample_rate, audio.original_channels) == (16_000, rate, 2)
    # encoder delay is trimmed where the container says how much (MP3's LAME tag, Ogg, WebM); AAC
    # in M4A or ADTS keeps up to one 1024-sample frame of it
    assert 3.0 - 0.001 <= audio.duration <= 3.0 + 2048 / rate
    assert np.sqrt(np.mean(audio.samples[1600:-1600] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    assert _frequency(audio.samples) == pytest.approx(440, abs=2)


def test_the_audio_of_a_video_is_decoded_and_its_video_is_not():
    audio = decode(media.video_with_audio(), LIMITS)
    assert audio.original_sample_rate == 48_000
    assert audio.duration == pytest.approx(3.0, abs=0.05)
    assert _frequency(audio.samples) == pytest.approx(440, abs=2)


def test_the_format_is_picked_by_content_whatever_the_upload_says():
    """The bytes decide: an MP3 read through a stream with no name decodes as MP3, a WAV as WAV."""
    mp3 = media.speech_tone("mp3")
    assert decode(io.BytesIO(mp3), LIMITS).original_sample_rate == 44_100
    assert decode(encode(tone(2)), LIMITS).original_sample_rate == 16_000


@pytest.mark.parametrize("index", range(8))
def test_audio_stream_picks_among_eight(index):
    audio = decode(media.eight_audio_streams(), LIMITS, index)
    assert _frequency(audio.samples) == pytest.approx(media.streams_frequencies()[index], abs=2)


def test_truncated_mp3_decodes_up_to_its_cut():
    """MP3 is a stream of frames with no trusted length: a cut file is what it holds, as in any player."""
    mp3 = media.speech_tone("mp3", 6.0)
    whole = decode(mp3, LIMITS)
    cut = decode(media.truncated(mp3), LIMITS)
    assert 2.8 < cut.duration < 3.2 and whole.duration == pytest.approx(6.0, abs=0.001)
    np.testing.assert_allclose(cut.samples[:32_000], whole.samples[:32_000], atol=1e-6)


def test_a_10_mb_garbage_id3_tag_is_skipped():
    mp3 = media.speech_tone("mp3")
    tagged = media.with_garbage_id3(mp3)
    assert len(tagged) > 10_000_000
    np.testing.assert_array_equal(decode(tagged, LIMITS).samples, decode(mp3, LIMITS).samples)


def test_opus_claiming_ten_hours_is_decoded_for_what_it_holds():
    """The last page says 10 h (over the 4 h limit): the claim is not trusted, the 3 s are decoded."""
    audio = decode(media.opus_claiming(hours=10), LIMITS)
    assert audio.duration == pytest.approx(3.0, abs=0.02)


def test_100000_tiny_packets_are_decoded_whole():
    audio = decode(media.tiny_packets(), LIMITS)
    assert audio.original_sample_rate == 8_000
    assert audio.duration == pytest.approx(100_000 / 8_000)
    assert _frequency(audio.samples) == pytest.approx(300, abs=2)


def test_a_wav_followed_by_mp4_boxes_is_that_wav():
    """A polyglot is read as what it starts with: the WAV, its trailing MP4 ignored."""
    both, wav = media.polyglot()
    np.testing.assert_array_equal(decode(both, LIMITS).samples, decode(wav, LIMITS).samples)


def test_an_opus_file_over_the_limit_stops_while_decoding():
    limits = AudioLimits(max_seconds=2.0)
    with pytest.raises(ServiceError) as caught:
        decode(media.speech_tone("webm", 3.0), limits)
    assert caught.value.code == "audio_too_long"
    assert "decoding stopped at 2." in caught.value.message


HOSTILE = [
    ("truncated M4A", lambda: media.truncated(media.speech_tone("m4a")), "corrupt_audio"),
    ("ADTS noise", media.adts_noise, "corrupt_audio"),
    ("MP4 without moov", lambda: media.without_moov(media.speech_tone("m4a")), "corrupt_audio"),
    ("MP4 moov past the end", lambda: media.moov_past_the_end(media.speech_tone("m4a")), "corrupt_audio"),
    ("MP4 with only video", media.video_only, "no_audio_stream"),
    ("unknown codec", media.unknown_codec, "unsupported_codec"),
    ("zip named .mp3", media.zip_of_mp3, "not_audio"),
    ("Matroska magic only", lambda: b"\x1a\x45\xdf\xa3" + bytes(300), "corrupt_audio"),
    ("0.2 s of MP3", lambda: media.speech_tone("mp3", 0.2), "audio_too_short"),
]


@pytest.mark.parametrize(("label", "build", "code"), HOSTILE, ids=[label for label, _, _ in HOSTILE])
def test_hostile_media_get_their_error_code(label, build, code):
    error = _error(build())
    assert error.code == code, error.message


@pytest.mark.parametrize(
    ("build", "index"), [(media.eight_audio_streams, 8), (lambda: encode(tone(2)), 1), (media.video_with_audio, 1)]
)
def test_an_audio_stream_that_does_not_exist_is_no_audio_stream(build, index):
    error = _error(build(), index)
    assert error.code == "no_audio_stream" and error.http_status == 422
    assert f"audio_stream {index} does not exist" in error.message


def test_a_truncated_m4a_is_corrupt_not_shorter():
    """An M4A's index (moov, written last) is cut away with its end: nothing says where the audio is."""
    m4a = media.speech_tone("m4a", 6.0)
    assert [box[0] for box in media.mp4_boxes(m4a)][-1] == b"moov"
    assert _error(media.truncated(m4a, 0.9)).code == "corrupt_audio"

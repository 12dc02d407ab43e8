"""Decode uploaded audio into what the engine expects: mono float32 at 16 kHz.

Decoding streams: a ``BlockSource`` yields the decoded samples a bounded block at a time
(about ``BLOCK_BYTES`` of float32 whatever the channel count), and each block is
downmixed, checked and resampled (``StreamResampler``) as it comes, so that only the
16 kHz mono result grows, and it grows on disk (``SampleFile``). Peak memory is a constant,
whatever the source's length, rate, channel count or compression, and the duration limit is enforced while
decoding, not only from what the header claims. The block source is chosen by the file's
first bytes, never its name: soundfile (libsndfile, exact and fast) for WAV, RF64, W64 and
FLAC; FFmpeg through PyAV (``av_source``) for MP3, AAC/M4A/MP4/MOV, Ogg (Opus, Vorbis),
WebM/Matroska, AMR and WMA. Every way an input can be unusable maps to one error code (see
``errors``). Nothing here imports torch.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol

import numpy as np
import soundfile as sf

from consumer.audio import av_source, wav_headers
from consumer.audio.resampler import StreamResampler
from consumer.audio.samples import SampleFile
from consumer.config import AudioLimits
from consumer.errors import (
    AudioTooLongError,
    AudioTooShortError,
    CorruptAudioError,
    NoAudioStreamError,
    NonFiniteAudioError,
    NotAudioError,
    PayloadTooLargeError,
    UnsupportedSampleRateError,
)

TARGET_SAMPLE_RATE = 16_000
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
SUPPORTED_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "FLAC"})  # soundfile's; the rest is av_source's
BLOCK_BYTES = 1 << 20  # decoded float32 samples per block, all channels together

# Leading bytes of the containers soundfile reads: a file that starts like one of them (or
# like one of av_source's) but fails to decode is corrupt, anything else is not audio at all.
_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"riff", b"fLaC")
# libsndfile's length for a stream that does not declare one (a FLAC whose STREAMINFO says 0)
_UNKNOWN_FRAMES = 2**63 - 1


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """Mono float32 samples at ``sample_rate`` (on disk: ``SampleFile``) plus what the original
    file was. Whoever decoded it closes ``samples`` when done with them."""

    samples: SampleFile
    sample_rate: int
    original_sample_rate: int
    original_channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


class BlockSource(Protocol):
    """A decoder as the decoding pipeline sees it: the stream's shape, then its samples in blocks."""

    @property
    def sample_rate(self) -> int:
        """Frames per second of the decoded stream."""
        ...

    @property
    def channels(self) -> int:
        """Samples per frame."""
        ...

    @property
    def frames(self) -> int | None:
        """How many frames the container declares; None when it does not say (decode to the end)."""
        ...

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """Yield the decoded samples in order as float32 arrays of shape (n, channels), 0 < n <= ``frames``.

        A block may be overwritten once the next one is asked for. Ends when the stream
        does; raises ``CorruptAudioError`` when the data cannot be decoded.
        """
        ...


def decode(
    source: bytes | IO[bytes], limits: AudioLimits, audio_stream: int = 0, beat: Callable[[], None] | None = None
) -> DecodedAudio:
    """Decode, downmix, validate and resample ``source`` to 16 kHz mono float32.

    ``source`` is the whole file as bytes, or a seekable binary stream. ``audio_stream``
    picks among the file's audio streams (from 0; WAV and FLAC have one). ``beat`` is
    called after every decoded block (the job is alive: ``consumer.deadline``). Raises one
    of the audio errors of ``consumer.errors``; never anything else for bad input.
    """
    stream = _as_stream(source, limits.max_bytes)
    head = stream.read(16)
    stream.seek(0)
    if not head:
        raise AudioTooShortError("the file is empty")
    if not head.startswith(_MAGIC):
        demuxer = av_source.sniff(head)
        if demuxer is None:
            raise NotAudioError(
                "the file is not in a supported format (WAV, FLAC, MP3, AAC, M4A/MP4, Ogg, WebM, AMR, WMA)"
            )
        with av_source.AvSource(stream, demuxer, audio_stream) as decoder:
            return decode_blocks(decoder, limits, beat)
    if audio_stream != 0:
        raise NoAudioStreamError(f"audio_stream {audio_stream} does not exist: the file has 1 audio stream")
    try:
        sound = sf.SoundFile(wav_headers.prepare(stream))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise CorruptAudioError("the audio header cannot be read") from None
    with sound:
        if sound.format not in SUPPORTED_FORMATS:
            raise NotAudioError(f"{sound.format} is not supported")
        return decode_blocks(_SoundFileSource(sound), limits, beat)


def decode_blocks(source: BlockSource, limits: AudioLimits, beat: Callable[[], None] | None = None) -> DecodedAudio:
    """Downmix, validate and resample what ``source`` decodes, block by block (see the module docstring)."""
    rate, channels, declared = source.sample_rate, source.channels, source.frames
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedSampleRateError(f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if channels < 1:
        raise CorruptAudioError("the file declares no channels")
    if declared is not None:  # a file claiming hours of audio is refused without reading it
        _check_not_too_long(declared, rate, limits, decoding=False)
    resampler = StreamResampler(rate, TARGET_SAMPLE_RATE)
    output = SampleFile(TARGET_SAMPLE_RATE)
    try:
        frames = 0
        for block in source.blocks(max(1, BLOCK_BYTES // (4 * channels))):
            mono = block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0]
            if not np.isfinite(mono).all():
                raise NonFiniteAudioError("the audio contains NaN or infinite samples")
            frames += len(mono)
            _check_not_too_long(frames, rate, limits, decoding=True)
            output.append(resampler.feed(mono))
            if beat is not None:
                beat()
        if declared is not None and frames < declared:
            raise CorruptAudioError(
                f"the audio is truncated: the header declares {declared} frames, {frames} were read"
            )
        if frames / rate < limits.min_seconds:
            raise AudioTooShortError(
                f"the audio lasts {frames / rate:.3f} s, less than the minimum {limits.min_seconds} s"
            )
        output.append(resampler.finish())
    except BaseException:
        output.close()
        raise
    return DecodedAudio(
        samples=output,
        sample_rate=TARGET_SAMPLE_RATE,
        original_sample_rate=rate,
        original_channels=channels,
    )


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


def _check_not_too_long(frames: int, rate: int, limits: AudioLimits, *, decoding: bool) -> None:
    if frames / rate <= limits.max_seconds:
        return
    if decoding:
        raise AudioTooLongError(
            f"the audio lasts more than the maximum {limits.max_seconds:.0f} s (decoding stopped at {frames / rate:.1f} s)"
        )
    raise AudioTooLongError(f"the audio lasts {frames / rate:.1f} s, more than the maximum {limits.max_seconds:.0f} s")


class _SoundFileSource:
    """libsndfile's decoder as a ``BlockSource``."""

    def __init__(self, sound: sf.SoundFile) -> None:
        self._sound = sound

    @property
    def sample_rate(self) -> int:
        return int(self._sound.samplerate)

    @property
    def channels(self) -> int:
        return int(self._sound.channels)

    @property
    def frames(self) -> int | None:
        frames = int(self._sound.frames)
        return None if frames >= _UNKNOWN_FRAMES else frames

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        buffer = np.empty((frames, self.channels), np.float32)
        pointer = sf._ffi.cast("float *", buffer.ctypes.data)
        handle = self._sound._file
        while True:
            # libsndfile's own read, not SoundFile.read: that one seeks back to where it
            # stopped after every read, which libFLAC refuses in a stream of unknown length
            n = sf._snd.sf_readf_float(handle, pointer, frames)
            code = sf._snd.sf_error(handle)
            if code:
                raise CorruptAudioError(f"the audio data cannot be decoded: {sf.LibsndfileError(code)}")
            if n <= 0:
                return
            yield buffer[:n]

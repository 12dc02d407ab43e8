"""FFmpeg's decoders (through PyAV, whose wheel bundles FFmpeg's libraries) as a ``BlockSource``.

This reads the containers libsndfile does not: MP3, AAC (ADTS, M4A/MP4/MOV), Opus and
Vorbis in Ogg or WebM/Matroska, AMR and WMA. The container is recognised from the file's
first bytes (``sniff``), never from its name or Content-Type, and FFmpeg is told which
demuxer to use: it never probes, so a text, image or archive is ``not_audio`` before
FFmpeg sees it, and a file that starts like a container but does not parse is
``corrupt_audio``.

Only the chosen audio stream is demuxed (every other stream, video included, is
discarded by the demuxer and never decoded). Its frames are converted to float32 and
gathered into blocks for ``consumer.audio.decoder.decode_blocks``, which downmixes, resamples and
enforces the duration limit while decoding. A container's declared duration is never
used: these formats are streams, decoded to their end.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import IO

import av
import av.error
import numpy as np
from av.audio.frame import AudioFrame
from av.container import InputContainer
from av.stream import Discard

from consumer.errors import (
    AudioTooShortError,
    CorruptAudioError,
    NoAudioStreamError,
    UnsupportedCodecError,
)

# Box types an ISO base media file (MP4, M4A, MOV, 3GP) starts with, at offset 4
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide")
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
# Full scale of each integer sample format, to bring it to [-1, 1)
_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, np.dtype(np.int64): 2.0**63}


def sniff(head: bytes) -> str | None:
    """The FFmpeg demuxer for a file that starts with ``head`` (its first 16 bytes or more), or None.

    None means no container this module reads starts that way.
    """
    if head.startswith(b"ID3") or _mpeg_audio_sync(head, adts=False):
        return "mp3"
    if _mpeg_audio_sync(head, adts=True):
        return "aac"
    if head[4:8] in _MP4_BOXES:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"#!AMR"):
        return "amr"
    if head.startswith(_ASF_GUID):
        return "asf"
    return None


def _mpeg_audio_sync(head: bytes, *, adts: bool) -> bool:
    """An MPEG audio frame header at offset 0: layer 0 is AAC's ADTS, layers 1-3 are MPEG audio."""
    if len(head) < 2 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    layer = head[1] >> 1 & 3
    return head[1] & 0xF6 == 0xF0 if adts else layer != 0 and head[1] & 0x18 != 0x08


class AvSource:
    """One audio stream of a container, decoded by FFmpeg; a ``BlockSource`` and a context manager.

    Opening reads the container's header and decodes the first frame, which gives the
    stream's rate and channel count. Raises ``CorruptAudioError`` when the container does
    not parse, ``NoAudioStreamError`` when it has no audio stream ``audio_stream``
    (counted among its audio streams from 0), ``UnsupportedCodecError`` when FFmpeg has no
    decoder for that stream, ``AudioTooShortError`` when the stream holds no sample.
    """

    def __init__(self, stream: IO[bytes], demuxer: str, audio_stream: int = 0) -> None:
        try:
            # tags are never read: undecodable ones are no reason to refuse the audio
            self._container: InputContainer = av.open(stream, mode="r", format=demuxer, metadata_errors="ignore")
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(f"the {demuxer} container cannot be read: {_reason(exc)}") from None
        try:
            self._first = self._select(audio_stream)
        except BaseException:
            self._container.close()
            raise

    def _select(self, audio_stream: int) -> AudioFrame:
        streams = self._container.streams
        audio = streams.audio
        if not audio:
            others = ", ".join(sorted({s.type for s in streams})) or "nothing"
            raise NoAudioStreamError(f"the file has no audio stream (it holds {others})")
        if not 0 <= audio_stream < len(audio):
            raise NoAudioStreamError(
                f"audio_stream {audio_stream} does not exist: the file has {len(audio)} audio stream(s)"
            )
        self._stream = audio[audio_stream]
        if self._stream.codec_context is None:
            raise UnsupportedCodecError(f"audio stream {audio_stream} is in a codec that cannot be decoded")
        for other in streams:
            if other is not self._stream:
                other.discard = Discard.all  # the demuxer drops their packets unread by any decoder
        self._frames = self._decoded()
        first = next(self._frames, None)
        if first is None:
            raise AudioTooShortError("the audio stream holds no samples")
        self._rate, self._channels = first.sample_rate, first.layout.nb_channels
        return first

    def _decoded(self) -> Iterator[AudioFrame]:
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    if isinstance(frame, AudioFrame) and frame.samples:
                        yield frame
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(f"the audio data cannot be decoded: {_reason(exc)}") from None

    @property
    def sample_rate(self) -> int:
        return int(self._rate)

    @property
    def channels(self) -> int:
        return int(self._channels)

    @property
    def frames(self) -> int | None:
        return None  # a container's duration is a claim; decode to the end instead

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """Frames gathered into blocks of ``frames`` (the last one shorter), float32 in [-1, 1]."""
        buffer = np.empty((frames, self._channels), np.float32)
        filled = 0
        for frame in self._all_frames():
            if frame.sample_rate != self._rate or frame.layout.nb_channels != self._channels:
                raise CorruptAudioError(
                    f"the audio changes from {self._rate} Hz, {self._channels} channel(s) to "
                    f"{frame.sample_rate} Hz, {frame.layout.nb_channels} channel(s) mid-stream"
                )
            samples = _as_float(frame)
            done = 0
            while done < len(samples):
                n = min(frames - filled, len(samples) - done)
                buffer[filled : filled + n] = samples[done : done + n]
                filled, done = filled + n, done + n
                if filled == frames:
                    yield buffer
                    filled = 0
        if filled:
            yield buffer[:filled]

    def _all_frames(self) -> Iterator[AudioFrame]:
        yield self._first
        del self._first  # its samples are copied: free them as the stream goes on
        yield from self._frames

    def close(self) -> None:
        """Release FFmpeg's demuxer and decoder."""
        self._container.close()

    def __enter__(self) -> AvSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _as_float(frame: AudioFrame) -> np.ndarray:
    """A frame's samples as (n, channels), float32 when they are floats, scaled to [-1, 1) when integers."""
    data = frame.to_ndarray()
    samples = data.T if frame.format.is_planar else data.reshape(frame.samples, -1)
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    if samples.dtype in _SCALE:
        return (samples / _SCALE[samples.dtype]).astype(np.float32)
    return samples.astype(np.float32, copy=False)


def _reason(exc: Exception) -> str:
    """FFmpeg's own words for an error, without PyAV's errno and call name."""
    return str(getattr(exc, "strerror", None) or exc)

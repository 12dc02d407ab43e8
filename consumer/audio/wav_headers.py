"""What the headers of the WAV family (RIFF, RF64/BW64, Sony Wave64) declare, checked before decoding.

libsndfile quietly shortens a file whose header declares more samples than it holds, which
would turn a truncated upload into a shorter, wrong result instead of an error; and it reads
no samples at all from a WAV whose ``data`` size a streaming writer left at 0. ``prepare``
walks the chunks up to ``data`` to refuse the first and to let the second be read.
"""

from __future__ import annotations

import io
import struct
from typing import IO

from consumer.errors import CorruptAudioError

# Sony Wave64 names its chunks with GUIDs: the four letters, then a fixed suffix
_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
_W64_SUFFIX = b"\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_W64_DATA = b"data" + _W64_SUFFIX
_W64_HEADER = 40  # riff GUID, u64 file size, wave GUID
_UNKNOWN_32 = (0, 0xFFFF_FFFF)  # what streaming writers leave in a 32-bit size they cannot know


def prepare(stream: IO[bytes]) -> IO[bytes] | io.RawIOBase:
    """Check ``stream``'s declared lengths if it is a WAV, RF64, BW64 or W64 file; return what to decode.

    Raises ``CorruptAudioError`` when a chunk up to and including ``data`` declares more
    bytes than the file holds. Returns ``stream`` itself, or, for a RIFF WAV whose ``data``
    size is 0 (a streaming writer's "unknown"), a view of it where that size reads as
    0xFFFFFFFF, which libsndfile takes as "samples up to the end of the file" as it
    already does when a writer leaves that value. Leaves the position at 0 either way.
    """
    head = stream.read(16)
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    try:
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            streamed_size_at = _walk_riff(stream, size, ds64=None)
            if streamed_size_at is not None:
                return _Overlay(stream, streamed_size_at, b"\xff\xff\xff\xff")
        elif head[:4] in (b"RF64", b"BW64") and head[8:12] == b"WAVE":
            _walk_riff(stream, size, ds64=_read_ds64(stream, size))
        elif head == _W64_RIFF:
            _walk_w64(stream, size)
        return stream
    finally:
        stream.seek(0)


def _truncated(what: str, declared: int, held: int) -> CorruptAudioError:
    return CorruptAudioError(
        f"the audio is truncated: the header declares {declared} bytes of {what}, the file holds {held}"
    )


def _read_ds64(stream: IO[bytes], size: int) -> tuple[int, int]:
    """RF64's ``ds64`` chunk (always first): the 64-bit RIFF and data sizes that the 32-bit fields defer to."""
    stream.seek(12)
    chunk = stream.read(8 + 16)
    if len(chunk) < 24 or chunk[:4] != b"ds64":
        raise CorruptAudioError("the RF64 header has no ds64 chunk")
    riff_size, data_size = struct.unpack("<QQ", chunk[8:24])
    if riff_size + 8 > size and riff_size != 0xFFFF_FFFF_FFFF_FFFF:
        raise _truncated("file", riff_size + 8, size)
    return riff_size, data_size


def _walk_riff(stream: IO[bytes], size: int, ds64: tuple[int, int] | None) -> int | None:
    """Walk RIFF/RF64 chunks to ``data``; return the offset of a streamed (0) data size, if any."""
    position = 12
    while position + 8 <= size:
        stream.seek(position)
        chunk_id = stream.read(4)
        (chunk_size,) = struct.unpack("<I", stream.read(4))
        if chunk_id == b"data":
            if ds64 is not None and chunk_size == 0xFFFF_FFFF:
                chunk_size = ds64[1]
            elif ds64 is None and chunk_size in _UNKNOWN_32:
                return position + 4 if chunk_size == 0 else None
            if position + 8 + chunk_size > size:
                raise _truncated("samples", chunk_size, size - position - 8)
            return None
        if position + 8 + chunk_size > size:
            raise _truncated(f"its {chunk_id!r} chunk", chunk_size, size - position - 8)
        position += 8 + chunk_size + (chunk_size & 1)  # chunks are word-aligned
    return None


def _walk_w64(stream: IO[bytes], size: int) -> None:
    """Walk Wave64 chunks to ``data`` (sizes are 64-bit and count the 24-byte chunk header)."""
    if size < _W64_HEADER:
        return  # cut inside its first header: libsndfile refuses it
    stream.seek(16)
    (file_size,) = struct.unpack("<Q", stream.read(8))
    if file_size > size:
        raise _truncated("file", file_size, size)
    position = _W64_HEADER
    while position + 24 <= size:
        stream.seek(position)
        guid = stream.read(16)
        (chunk_size,) = struct.unpack("<Q", stream.read(8))
        if position + chunk_size > size:
            what = "samples" if guid == _W64_DATA else f"its {guid[:4]!r} chunk"
            raise _truncated(what, chunk_size - 24, size - position - 24)
        if guid == _W64_DATA or chunk_size < 24:  # a size below its own header cannot be walked past
            return
        position += (chunk_size + 7) & ~7  # chunks are 8-byte aligned


class _Overlay(io.RawIOBase):
    """``stream`` read as if ``patch`` were written at ``offset``; the underlying stream is not changed."""

    def __init__(self, stream: IO[bytes], offset: int, patch: bytes) -> None:
        super().__init__()
        self._stream = stream
        self._offset = offset
        self._patch = patch

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        start = self._stream.tell()
        data = self._stream.read(len(buffer))
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        # copy the part of the patch that falls inside [start, start + len(data))
        lo, hi = max(start, self._offset), min(start + len(data), self._offset + len(self._patch))
        if lo < hi:
            view[lo - start : hi - start] = self._patch[lo - self._offset : hi - self._offset]
        return len(data)

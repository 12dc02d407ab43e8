"""Compressed audio and video, and broken variants of them, made at test time with ffmpeg.

Every builder returns the file's bytes. ffmpeg is the test machine's; a missing ffmpeg
fails the test that needs it (``FileNotFoundError``), it is never skipped.
"""

from __future__ import annotations

import functools
import io
import shutil
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from tests.support.audio_bytes import encode, tone

# ffmpeg arguments per compressed format: (codec options, container, file suffix)
CODECS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "mp3": (("-c:a", "libmp3lame", "-b:a", "128k"), "mp3", "mp3"),
    "m4a": (("-c:a", "aac", "-b:a", "128k"), "ipod", "m4a"),
    "webm": (("-c:a", "libopus", "-b:a", "64k"), "webm", "webm"),
    "opus": (("-c:a", "libopus", "-b:a", "64k"), "ogg", "opus"),
    "ogg": (("-c:a", "libvorbis"), "ogg", "ogg"),
    "adts": (("-c:a", "aac"), "adts", "aac"),
}


def ffmpeg(*args: str, inputs: dict[str, bytes] | None = None, output: str = "out") -> bytes:
    """Run ffmpeg in a fresh folder holding ``inputs`` (name: bytes); return the file it writes as ``output``."""
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg is needed to build the compressed test media")
    with tempfile.TemporaryDirectory() as folder:
        for name, data in (inputs or {}).items():
            (Path(folder) / name).write_bytes(data)
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args, output], cwd=folder, check=True, timeout=600
        )
        return (Path(folder) / output).read_bytes()


def transcode(wav: bytes, kind: str) -> bytes:
    """``wav`` encoded as ``kind`` (a key of ``CODECS``)."""
    options, container, suffix = CODECS[kind]
    return ffmpeg("-i", "in.wav", *options, "-f", container, inputs={"in.wav": wav}, output=f"out.{suffix}")


@functools.cache
def speech_tone(kind: str, seconds: float = 3.0, rate: int = 44_100, channels: int = 2) -> bytes:
    """A 440 Hz tone (``tone``'s level) as ``kind``."""
    return transcode(encode(tone(seconds, rate, channels), rate), kind)


def video_with_audio(seconds: float = 3.0) -> bytes:
    """An H.264 + AAC MP4 (a phone's video): a test pattern and a 440 Hz tone."""
    return ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}", "-i", "in.wav"),
        *("-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-c:a", "aac", "-f", "mp4"),
        inputs={"in.wav": encode(tone(seconds, 48_000), 48_000)},
        output="out.mp4",
    )


def video_only(seconds: float = 3.0) -> bytes:
    """An H.264 MP4 with no audio track."""
    return ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}", "-c:v", "libx264", "-f", "mp4"),
        output="out.mp4",
    )


def streams_frequencies(count: int = 8) -> list[int]:
    """The tone of each audio stream of ``eight_audio_streams``: stream k is at 300 + 100 k Hz."""
    return [300 + 100 * k for k in range(count)]


def eight_audio_streams(seconds: float = 3.0) -> bytes:
    """A Matroska file with 8 AAC audio streams, stream k a tone of ``streams_frequencies()[k]``."""
    args: list[str] = []
    for frequency in streams_frequencies():
        args += ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate=16000:duration={seconds}"]
    for k in range(len(streams_frequencies())):
        args += ["-map", f"{k}:a"]
    return ffmpeg(*args, "-c:a", "aac", "-f", "matroska", output="out.mka")


def tiny_packets(packets: int = 100_000, rate: int = 8_000) -> bytes:
    """Matroska holding ``packets`` packets of one 16-bit sample each (a 300 Hz tone)."""
    return ffmpeg(
        *("-f", "lavfi", "-i", f"sine=frequency=300:sample_rate={rate}:duration={packets / rate}"),
        *("-af", "asetnsamples=n=1:p=0", "-c:a", "pcm_s16le", "-f", "matroska"),
        output="out.mkv",
    )


def unknown_codec() -> bytes:
    """Matroska whose audio track's CodecID is one FFmpeg does not know (a PCM track renamed)."""
    mkv = ffmpeg(
        *("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=3", "-c:a", "pcm_s16le"),
        *("-f", "matroska"),
        output="out.mkv",
    )
    assert mkv.count(b"A_PCM/INT/LIT") == 1
    return mkv.replace(b"A_PCM/INT/LIT", b"A_XYZ/UNKNOWN")


# --- broken and hostile variants ---------------------------------------------------------------


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    """The first ``fraction`` of ``data``, cut mid-frame (7 bytes past the fraction)."""
    return data[: int(len(data) * fraction) + 7]


def with_garbage_id3(mp3: bytes, size: int = 10_000_000) -> bytes:
    """``mp3`` (its own ID3 tag removed) behind an ID3v2.4 tag of ``size`` random bytes."""
    if mp3.startswith(b"ID3"):
        mp3 = mp3[10 + _syncsafe_read(mp3[6:10]) :]
    garbage = np.random.default_rng(5).integers(0, 256, size, dtype=np.uint8).tobytes()
    return b"ID3\x04\x00\x00" + _syncsafe(size) + garbage + mp3


def adts_noise(frames: int = 2000, payload: int = 200) -> bytes:
    """Valid ADTS headers (AAC LC, 44.1 kHz, mono) each followed by random bytes instead of AAC."""
    rng = np.random.default_rng(11)
    out = bytearray()
    for _ in range(frames):
        n = payload + 7
        out += bytes([0xFF, 0xF1, 0x50, 0x40 | (n >> 11) & 3, (n >> 3) & 0xFF, (n & 7) << 5 | 0x1F, 0xFC])
        out += rng.integers(0, 256, payload, dtype=np.uint8).tobytes()
    return bytes(out)


def mp4_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """The top-level boxes of an MP4 file: (type, offset, size)."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def without_moov(mp4: bytes) -> bytes:
    """An MP4 whose ``moov`` box (its index: codecs, sample tables) is removed."""
    [(_, offset, size)] = [box for box in mp4_boxes(mp4) if box[0] == b"moov"]
    return mp4[:offset] + mp4[offset + size :]


def moov_past_the_end(mp4: bytes) -> bytes:
    """An MP4 whose ``mdat`` claims 100 MB, so that the ``moov`` after it lies past the end of the file."""
    [(_, offset, _)] = [box for box in mp4_boxes(mp4) if box[0] == b"mdat"]
    assert [box[0] for box in mp4_boxes(mp4)].index(b"moov") > [box[0] for box in mp4_boxes(mp4)].index(b"mdat")
    return mp4[:offset] + struct.pack(">I", 100_000_000) + mp4[offset + 4 :]


def with_last_granule(ogg: bytes, granule: int) -> bytes:
    """``ogg`` whose last page claims ``granule`` (its end position in samples), its CRC recomputed."""
    pages, offset = [], 0
    while offset < len(ogg):
        assert ogg[offset : offset + 4] == b"OggS"
        segments = ogg[offset + 26]
        size = 27 + segments + sum(ogg[offset + 27 : offset + 27 + segments])
        pages.append((offset, size))
        offset += size
    start, size = pages[-1]
    page = bytearray(ogg[start : start + size])
    page[6:14] = struct.pack("<q", granule)
    page[22:26] = bytes(4)
    page[22:26] = struct.pack("<I", _ogg_crc(bytes(page)))
    return ogg[:start] + bytes(page)


def opus_claiming(hours: float, seconds: float = 3.0) -> bytes:
    """An Ogg Opus file of ``seconds`` whose last page claims ``hours`` (48 kHz granules)."""
    return with_last_granule(speech_tone("opus", seconds), int(hours * 3600 * 48_000) + 312)


def polyglot(seconds: float = 3.0) -> tuple[bytes, bytes]:
    """(a valid WAV followed by a whole MP4 with audio, that WAV alone)."""
    wav = encode(tone(seconds))
    return wav + speech_tone("m4a", 5.0), wav


def zip_of_mp3() -> bytes:
    """A ZIP archive holding an MP3 (as a user might upload it, named .mp3)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("audio.mp3", speech_tone("mp3"))
    return out.getvalue()


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _syncsafe_read(data: bytes) -> int:
    return data[0] << 21 | data[1] << 14 | data[2] << 7 | data[3]


@functools.cache
def _ogg_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = (r << 1) ^ 0x04C11DB7 if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return tuple(table)


def _ogg_crc(data: bytes) -> int:
    table, crc = _ogg_crc_table(), 0
    for byte in data:
        crc = ((crc << 8) ^ table[((crc >> 24) ^ byte) & 0xFF]) & 0xFFFFFFFF
    return crc

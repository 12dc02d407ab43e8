"""Peak memory and time of decoding (``consumer.audio.decode``) per kind of source.

Each source is generated into a temporary file, then decoded in a fresh process, once
timed and once with ``tracemalloc`` on (numpy reports its buffers to it); the figure is the peak of traced
memory during ``decode`` against the size of its result (16 kHz mono float32). The file's
bytes are not counted: the service reads them from a spooled file or gets them from the
caller. Compressed sources (MP3, AAC in M4A, Opus in WebM and Ogg) are made by ffmpeg from
its own sine generator and decoded by FFmpeg through PyAV; FFmpeg's own buffers (a few
frames and its read buffer, constant in the file's length) are outside tracemalloc.

``--vs-engine`` adds what decoding costs against the whole job on this machine: the
engine's real-time factor on a generated 5-minute conversation (diarization + speech
regions, its time being proportional to the audio's length), against the decode's
real-time factor of the 1-hour MP3. Usage::

    python bench/decode_memory.py                  # the default sources below
    python bench/decode_memory.py --long           # adds 3.9 h of 192 kHz FLAC (about 1 GiB of output)
    python bench/decode_memory.py flac192-10min    # chosen sources only
    python bench/decode_memory.py mp3-1h --vs-engine
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from consumer.audio import decode
from consumer.config import AudioLimits


def _silent_flac(path: Path, seconds: float, rate: int) -> None:
    block = np.zeros(rate * 60, np.int16)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16", format="FLAC") as out:
        for _ in range(int(seconds // 60)):
            out.write(block)
        out.write(block[: int(seconds % 60 * rate)])


def _wav(path: Path, seconds: float, rate: int, channels: int) -> None:
    """A 16-bit WAV of a 440 Hz tone with some noise on every channel, written a minute at a time."""
    rng = np.random.default_rng(0)
    frames = int(seconds * rate)
    data_bytes = frames * channels * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    step = max(1, min(rate * 60, (64 << 20) // (channels * 2)))
    with path.open("wb") as out:
        out.write(header)
        for start in range(0, frames, step):
            t = np.arange(start, min(frames, start + step)) / rate
            mono = 3000 * np.sin(2 * np.pi * 440 * t)
            block = mono[:, None] + rng.normal(0, 300, (len(t), channels))
            out.write(block.astype("<i2").tobytes())


def _ffmpeg_sine(path: Path, seconds: float, codec: list[str], container: str, rate: int = 48_000) -> None:
    """``seconds`` of a 440 Hz stereo sine encoded by ffmpeg straight from its generator."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"sine=frequency=440:sample_rate={rate}:duration={seconds}", "-ac", "2", *codec, "-f", container, str(path)],
        check=True,
    )  # fmt: skip


_MP3 = ["-c:a", "libmp3lame", "-b:a", "128k"]
SOURCES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "flac192-10min": ("10 min of silence, 192 kHz mono FLAC", lambda p: _silent_flac(p, 600, 192_000)),
    "wav1024": ("15 s, 1024 channels, 16 kHz 16-bit WAV", lambda p: _wav(p, 15, 16_000, 1024)),
    "wav48-stereo-10min": ("10 min, 48 kHz stereo 16-bit WAV", lambda p: _wav(p, 600, 48_000, 2)),
    "wav48-1h": ("1 h, 48 kHz mono 16-bit WAV", lambda p: _wav(p, 3600, 48_000, 1)),
    "mp3-10min": ("10 min, 44.1 kHz stereo MP3 128k", lambda p: _ffmpeg_sine(p, 600, _MP3, "mp3", 44_100)),
    "m4a-10min": ("10 min, 48 kHz stereo AAC 128k in M4A", lambda p: _ffmpeg_sine(p, 600, ["-c:a", "aac"], "ipod")),
    "webm-10min": (
        "10 min, 48 kHz stereo Opus 64k in WebM",
        lambda p: _ffmpeg_sine(p, 600, ["-c:a", "libopus"], "webm"),
    ),
    "opus-10min": ("10 min, 48 kHz stereo Opus 64k in Ogg", lambda p: _ffmpeg_sine(p, 600, ["-c:a", "libopus"], "ogg")),
    "mp3-1h": ("1 h, 44.1 kHz stereo MP3 128k", lambda p: _ffmpeg_sine(p, 3600, _MP3, "mp3", 44_100)),
}
LONG = {"flac192-3.9h": ("3.9 h of silence, 192 kHz mono FLAC", lambda p: _silent_flac(p, 3.9 * 3600, 192_000))}


def measure(name: str) -> dict[str, float | str]:
    """Generate ``name`` and decode it with tracemalloc on; runs in its own process."""
    what, build = {**SOURCES, **LONG}[name]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source"
        build(path)
        size = path.stat().st_size
        with path.open("rb") as stream:  # timed untraced: tracemalloc slows every allocation
            started = time.perf_counter()
            decode(stream, AudioLimits())
            seconds = time.perf_counter() - started
        with path.open("rb") as stream:
            tracemalloc.start()
            audio = decode(stream, AudioLimits())
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    output = audio.samples.nbytes
    return {
        "source": name,
        "what": what,
        "file_mib": size / 2**20,
        "output_mib": output / 2**20,
        "peak_mib": peak / 2**20,
        "peak_over_output": peak / output,
        "decode_seconds": seconds,
    }


def engine_rtf() -> dict[str, float]:
    """The engine's real-time factor (diarization + speech regions) on a generated 5-minute conversation, warm."""
    import soundfile as sf

    from consumer.config import Settings
    from consumer.engine.pyannote_engine import PyannoteEngine
    from consumer.options import JobOptions
    from tests.support.conversation import conversation

    engine = PyannoteEngine(Settings.from_env(dict(os.environ)).engine)
    engine.load()
    samples, rate = sf.read(str(conversation(num_speakers=3, duration=300, seed=5).wav), dtype="float32")
    started = time.perf_counter()
    engine.run(samples, rate, JobOptions(), None)
    return {"real_time_factor": (time.perf_counter() - started) / (len(samples) / rate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", help=f"among {', '.join([*SOURCES, *LONG])}")
    parser.add_argument("--long", action="store_true", help="also decode 3.9 h of 192 kHz FLAC")
    parser.add_argument("--vs-engine", action="store_true", help="decode time of the 1-hour MP3 against the job's")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one source in this process
    parser.add_argument("--engine", action="store_true", help=argparse.SUPPRESS)  # internal: the engine's RTF
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    if args.engine:
        print(json.dumps(engine_rtf()))
        return
    names = args.sources or [*SOURCES, *(LONG if args.long else {})]
    print(f"{'source':20} {'file MiB':>9} {'output MiB':>11} {'peak MiB':>9} {'peak/output':>12} {'seconds':>8}")
    for name in names:
        run = subprocess.run(
            [sys.executable, __file__, "--one", name], capture_output=True, text=True, env=os.environ, check=True
        )
        row = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"{row['source']:20} {row['file_mib']:9.1f} {row['output_mib']:11.1f} {row['peak_mib']:9.1f} "
            f"{row['peak_over_output']:12.2f} {row['decode_seconds']:8.2f}"
        )
        if row["source"] == "mp3-1h":
            mp3_rtf = row["decode_seconds"] / 3600
    if args.vs_engine:
        if "mp3-1h" not in names:
            parser.error("--vs-engine needs the source mp3-1h")
        run = subprocess.run(
            [sys.executable, __file__, "--engine"], capture_output=True, text=True, env=os.environ, check=True
        )
        engine = json.loads(run.stdout.strip().splitlines()[-1])["real_time_factor"]
        print(
            f"\n1-hour MP3: decode RTF {mp3_rtf:.4f}, engine RTF {engine:.4f} on this machine: "
            f"decoding is {mp3_rtf / (mp3_rtf + engine):.1%} of the job"
        )


if __name__ == "__main__":
    main()

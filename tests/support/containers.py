"""The built image, run as OpenShift runs it: buildah containers as an arbitrary UID in group 0.

``buildah run`` (chroot isolation, the host's network) starts the image's entry point with
the image's environment, as ``ARBITRARY_USER``: a UID with no passwd entry in the image, in
group 0, with no hub token. Every process runs in a process group of its own, so that
stopping it stops everything ``buildah run`` started; every container is removed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support import local_dev

image_tool = local_dev.load("image")

# An OpenShift-style UID (from a namespace's range), which no image's passwd file names
ARBITRARY_USER = "1000770000:0"
NAME_PREFIX = "diarization-test-"
READY_TIMEOUT_S = 300  # as the integration tier waits for its processes


def buildah(*args: str) -> list[str]:
    """A buildah command line on the project's image storage (``local-dev/image.py``)."""
    return image_tool.buildah(image_tool.store(), *args)


def inspect(reference: str) -> dict[str, Any] | None:
    """``buildah inspect`` of an image, or None when the storage has no such image."""
    result = subprocess.run(buildah("inspect", "--type", "image", reference), capture_output=True, text=True)
    return json.loads(result.stdout) if result.returncode == 0 else None


@dataclass
class Container:
    """One process of the image, running as ``ARBITRARY_USER`` in container ``name``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float  # time.monotonic() when ``buildah run`` was started

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines the process wrote so far (other output left out)."""
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return lines

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the process's output."""
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout``; then the container is removed."""
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        except ProcessLookupError:
            pass  # the group ended between the poll and the signal
        finally:
            subprocess.run(buildah("rm", self.name), capture_output=True, check=False)


@dataclass(frozen=True)
class Started:
    """A mode of the image, ready: where it answers, and how long it took to get there."""

    container: Container
    url: str
    ready_seconds: float  # from `buildah run` to the first 200 from /ready


def wait_ready(container: Container, url: str) -> Started:
    """Poll ``url`` until it answers 200; fail with the container's log if it exits, its model load
    failed (``/ready`` says ``failed``) or it times out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if container.process.poll() is not None:
            raise AssertionError(f"{container.name} exited {container.process.returncode}:\n{container.log_tail()}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return Started(container, url.rsplit("/", 1)[0], time.monotonic() - container.started)
            last = f"{response.status_code} {response.text[:300]}"
            if response.headers.get("content-type", "").startswith("application/json"):
                if response.json().get("status") == "failed":
                    raise AssertionError(f"{url}: {last}\n{container.log_tail()}")
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.25)
    raise AssertionError(f"{url} not ready after {READY_TIMEOUT_S} s ({last}):\n{container.log_tail()}")


@dataclass
class Containers:
    """Starts containers of one image; ``close()`` stops and removes every one of them."""

    image: str
    logs: Path
    started: list[Container] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        """The image's OCI config (Entrypoint, Cmd, Env, User, Labels)."""
        details = inspect(self.image)
        assert details is not None, f"no image {self.image}"
        return details["OCIv1"]["config"]

    def _create(self, purpose: str) -> str:
        name = f"{NAME_PREFIX}{purpose}-{uuid.uuid4().hex[:8]}"
        subprocess.run(buildah("from", "--name", name, self.image), capture_output=True, check=True)
        return name

    def _run_command(self, name: str, env: dict[str, str], argv: list[str]) -> list[str]:
        options = ["--isolation", "chroot", "--network", "host", "--user", ARBITRARY_USER]
        options += [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        return buildah("run", *options, name, "--", *argv)

    def start(self, mode: str, env: dict[str, str]) -> Container:
        """The image's entry point in ``mode`` (``shim``, ``consumer``), with ``env`` added to the image's."""
        name = self._create(mode)
        log = self.logs / f"{name}.log"
        command = self._run_command(name, env, [*self.config()["Entrypoint"], mode])
        with log.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        container = Container(name, process, log, time.monotonic())
        self.started.append(container)
        return container

    def run(self, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``argv`` run to its end in a container of its own (removed afterwards)."""
        name = self._create("probe")
        try:
            return subprocess.run(
                self._run_command(name, {}, argv), capture_output=True, text=True, timeout=timeout, check=False
            )
        finally:
            subprocess.run(buildah("rm", name), capture_output=True, check=False)

    def close(self) -> None:
        """Stop and remove every container started here."""
        for container in self.started:
            container.stop()

"""Start the project's own processes for tests: free ports, readiness waits, clean stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support import local_dev
from tests.support.credentials import API_KEY

REPO = Path(__file__).resolve().parents[2]


# Each xdist worker hands out its own ninth of the stack's service ports (below the ephemeral
# range: see local-dev/stack.py), so that workers never hand out the same port.
_STACK = local_dev.load("stack")
_WORKERS = 9
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % _WORKERS
_SHARE = len(_STACK.SERVICE_PORTS) // _WORKERS
_OWN_PORTS = _STACK.SERVICE_PORTS[_WORKER * _SHARE : (_WORKER + 1) * _SHARE]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range:
    a port found free there can be taken by another process's socket before the service binds
    it (a consumer's probe server once failed so, "Address already in use")."""
    return _STACK.free_port(_OWN_PORTS)


def shim_env(model: str, port: int, **more: str) -> dict[str, str]:
    """A shim under test: on loopback at ``port``, with ``model`` and the tests' API key; ``more`` on top."""
    return {"PORT": str(port), "HOST": "127.0.0.1", "DIARIZATION_MODEL": model, "API_KEY": API_KEY, **more}


def start_module(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``python -m module`` from this checkout with ``env`` added, output into ``log``."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "LOG_FORMAT": "json", **env}
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO, env=full_env, stdout=sink, stderr=subprocess.STDOUT
        )


def wait_http(url: str, process: subprocess.Popen, timeout: float, log: Path, status: int = 200) -> requests.Response:
    """Poll ``url`` until it answers ``status``; fail with the process log if it dies or times out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == status:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.25)
    raise AssertionError(f"{url} not {status} after {timeout:.0f} s ({last}):\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM, wait, SIGKILL if needed; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class ConsumerProcess:
    """A ``diarization-consumer`` process under test."""

    process: subprocess.Popen
    env: dict[str, str]
    log: Path
    probe: str

    @property
    def group(self) -> str:
        return self.env["KAFKA_GROUP_ID"]

    @property
    def input_topic(self) -> str:
        return self.env["KAFKA_INPUT_TOPIC"]

    def metric(self, name: str) -> float:
        """The sum of a Prometheus metric's samples whose line starts with ``name``."""
        text = requests.get(f"{self.probe}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def log_lines(self) -> str:
        return self.log.read_text()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text()[-chars:]

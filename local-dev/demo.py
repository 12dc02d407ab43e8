#!/usr/bin/env python3
"""``make demo``: diarize pyannote's bundled sample through the running service, offline.

Starts the HTTP shim on a free loopback port with the offline bundle, waits until the
model is warm (``/ready``), uploads the sample to ``POST /v1/diarize`` and prints who
spoke when, then stops the shim.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sample() -> Path:
    import pyannote.audio

    return Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"


def _wait_ready(base: str, shim: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if shim.poll() is not None:
            sys.exit(f"the shim exited with {shim.returncode}; its log:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    sys.exit(f"the model was not ready after {timeout:.0f} s; see {log}")


def main() -> int:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(tempfile.gettempdir()) / f"diarization-demo-shim-{port}.log"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "LOG_FORMAT": "text", "PYTHONPATH": str(REPO)}
    print(f"starting the HTTP shim on {base} (log: {log})")
    started = time.monotonic()
    with log.open("wb") as sink:
        shim = subprocess.Popen([sys.executable, "-m", "http_shim.server"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_ready(base, shim, log)
        health = requests.get(f"{base}/health", timeout=5).json()
        print(f"model loaded and warm after {time.monotonic() - started:.1f} s: {health}")
        sample = _sample()
        print(f"POST /v1/diarize  file={sample.name}")
        with sample.open("rb") as audio:
            response = requests.post(f"{base}/v1/diarize", files={"file": audio}, timeout=600)
        response.raise_for_status()
        body = response.json()
        print(f"\n{body['num_speakers']} speakers, {len(body['segments'])} turns:")
        for turn in body["segments"]:
            print(f"  {turn['start']:7.2f} - {turn['end']:7.2f}  {turn['speaker']}")
        return 0
    finally:
        shim.send_signal(signal.SIGTERM)
        shim.wait(60)


if __name__ == "__main__":
    raise SystemExit(main())

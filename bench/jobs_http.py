#!/usr/bin/env python3
"""``/v1/jobs`` as an HTTP user meets it: a 2 GB upload's memory, and a 2-hour job across a shim restart.

Starts a local stack (instance ``bench-jobs``), a Kafka consumer and a shim with jobs on,
running as the documented jobs policy's store user (``local-dev/jobs-policy.json``).

``upload``: streams a file of ``--gib`` GiB (a WAV header and silence) to ``POST /v1/jobs``
and prints the shim worker's resident memory before, and its peak (VmHWM) after, against a
10 MiB upload first. ``MAX_AUDIO_BYTES`` is raised to 3 GiB on this shim only (the default,
512 MiB, refuses 2 GB before reading it; the consumer keeps the default and fails the job
with ``payload_too_large`` without downloading it).

``long``: submits a generated conversation (default 7200 s, 4 voices), polls the job every
2 s, stops the shim that took it once progress passes a third and starts another, and waits
for ``completed``: prints submit-to-completed time, the real-time factor, the statuses and
progress seen. Then the same file through ``POST /v1/diarize`` on a shim whose sync limits
are raised for this comparison (``SYNC_MAX_AUDIO_SECONDS``, ``REQUEST_TIMEOUT_SECONDS``):
whether the turns are the same.

    python bench/jobs_http.py upload [--gib 2]
    python bench/jobs_http.py long [--seconds 7200] [--speakers 4]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumer.config import Settings  # noqa: E402
from tests.support.conversation import conversation  # noqa: E402
from tests.support.credentials import API_AUTH  # noqa: E402
from tests.support.processes import free_port, shim_env, start_module, stop, wait_http  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

MIB = 1024 * 1024
LOGS = Path(tempfile.gettempdir())


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _worker_pid(master: int) -> int:
    """The gunicorn worker of a shim (the one child of its master)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


class Door:
    """The stack, one consumer and the shims of this run."""

    def __init__(self) -> None:
        self.stack = Stack.start("bench-jobs")
        self.model = Settings.from_env({}).engine.model
        self.user = self.stack.jobs_user()
        self.shims: dict[str, Any] = {}
        port = free_port()
        log = LOGS / f"bench-jobs-consumer-{uuid.uuid4().hex[:6]}.log"
        env = {**self.stack.env, "CONSUMER_PROBE_PORT": str(port), "KAFKA_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}"}
        self.consumer = start_module("consumer.kafka.worker", env, log)
        wait_http(f"http://127.0.0.1:{port}/ready", self.consumer, timeout=300, log=log)

    def shim(self, **more: str) -> str:
        port = free_port()
        log = LOGS / f"bench-jobs-shim-{uuid.uuid4().hex[:6]}.log"
        env = {**self.stack.env, **shim_env(self.model, port, JOBS_ENABLED="true", **self.user, **more)}
        process = start_module("http_shim.server", env, log)
        base = f"http://127.0.0.1:{port}"
        self.shims[base] = process
        wait_http(f"{base}/ready", process, timeout=300, log=log)
        return base

    def close(self) -> None:
        for process in self.shims.values():
            stop(process)
        stop(self.consumer)
        self.stack.destroy()


class _Body:
    """A multipart body with one ``file`` part of ``size`` bytes (a WAV header, then zeros),
    read in pieces: nothing holds the whole file, and ``len`` gives requests its Content-Length."""

    def __init__(self, size: int, name: str) -> None:
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        data = size - 44
        wav = b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
        wav += struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", data)
        self.head, self.zeros, self.tail = head + wav, data, f"\r\n--{boundary}--\r\n".encode()
        self.length = len(self.head) + data + len(self.tail)
        self.sent = 0

    def __len__(self) -> int:
        return self.length - self.sent

    def read(self, n: int = -1) -> bytes:
        n = self.length - self.sent if n is None or n < 0 else min(n, self.length - self.sent)
        out = bytearray()
        while len(out) < n:
            at = self.sent + len(out)
            if at < len(self.head):
                out += self.head[at : at + n - len(out)]
            elif at < len(self.head) + self.zeros:
                out += bytes(min(n - len(out), len(self.head) + self.zeros - at))
            else:
                offset = at - len(self.head) - self.zeros
                out += self.tail[offset : offset + n - len(out)]
        self.sent += len(out)
        return bytes(out)


def upload(args: argparse.Namespace) -> None:
    door = Door()
    try:
        base = door.shim(MAX_AUDIO_BYTES=str(3 * 1024 * MIB))
        worker = _worker_pid(door.shims[base].pid)
        time.sleep(20)  # the model loads in the background after /ready's first answer
        print(f"shim worker idle: VmRSS {_status_mib(worker, 'VmRSS'):.0f} MiB", flush=True)
        for size in (10 * MIB, int(args.gib * 1024 * MIB)):
            body = _Body(size, "big.wav")
            started = time.monotonic()
            answer = requests.post(
                f"{base}/v1/jobs", data=body, headers={**API_AUTH, "Content-Type": body.content_type}, timeout=3600
            )
            seconds = time.monotonic() - started
            print(
                f"upload {size / MIB:.0f} MiB: {answer.status_code} in {seconds:.1f} s "
                f"({size / MIB / seconds:.0f} MiB/s); shim worker VmRSS {_status_mib(worker, 'VmRSS'):.0f} MiB, "
                f"peak VmHWM {_status_mib(worker, 'VmHWM'):.0f} MiB",
                flush=True,
            )
            assert answer.status_code == 202, answer.text
    finally:
        door.close()


def _get(base: str, job_id: str) -> dict[str, Any]:
    return requests.get(f"{base}/v1/jobs/{job_id}", headers=API_AUTH, timeout=60).json()


def long(args: argparse.Namespace) -> None:
    print(f"generating a {args.seconds:.0f} s conversation of {args.speakers} voices (cached) ...", flush=True)
    talk = conversation(args.speakers, args.seconds, seed=2024)
    door = Door()
    try:
        first = door.shim()
        started = time.monotonic()
        with talk.wav.open("rb") as audio:
            job = requests.post(
                f"{first}/v1/jobs", files={"file": ("long.wav", audio)}, headers=API_AUTH, timeout=600
            ).json()
        print(f"submitted {job['id']} in {time.monotonic() - started:.1f} s", flush=True)
        base, restarted = first, False
        seen: list[str] = []
        fractions: list[float] = []
        while True:
            current = _get(base, job["id"])
            if not seen or seen[-1] != current["status"]:
                seen.append(current["status"])
                print(f"  {time.monotonic() - started:7.1f} s: {current['status']}", flush=True)
            if current["status"] == "running":
                fraction = current["progress"]["fraction"]
                if not fractions or fraction != fractions[-1]:
                    fractions.append(fraction)
                if fraction > 1 / 3 and not restarted:
                    stop(door.shims[base])
                    stopped = time.monotonic()
                    base, restarted = door.shim(), True
                    print(f"  restarted the shim at {fraction:.2f} ({time.monotonic() - stopped:.0f} s)", flush=True)
            if current["status"] in ("completed", "failed"):
                break
            time.sleep(2)
        elapsed = time.monotonic() - started
        rising = all(a < b for a, b in zip(fractions, fractions[1:], strict=False))
        print(
            f"{current['status']} in {elapsed:.0f} s (submit to completed), RTF {elapsed / args.seconds:.3f}; "
            f"statuses {seen}; {len(fractions)} progress values, rising: {rising}",
            flush=True,
        )
        result = current.get("result", {})
        print(f"speakers {result.get('num_speakers')}, {len(result.get('segments', []))} turns", flush=True)
        sync_base = door.shim(SYNC_MAX_AUDIO_SECONDS=str(args.seconds + 60), REQUEST_TIMEOUT_SECONDS="3600")
        sync_started = time.monotonic()
        with talk.wav.open("rb") as audio:
            sync = requests.post(
                f"{sync_base}/v1/diarize", files={"file": ("long.wav", audio)}, headers=API_AUTH, timeout=3600
            ).json()
        print(
            f"sync door: {time.monotonic() - sync_started:.0f} s; same turns as the job: "
            f"{sync.get('segments') == result.get('segments')}",
            flush=True,
        )
    finally:
        door.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    up = modes.add_parser("upload")
    up.add_argument("--gib", type=float, default=2.0)
    lg = modes.add_parser("long")
    lg.add_argument("--seconds", type=float, default=7200)
    lg.add_argument("--speakers", type=int, default=4)
    args = parser.parse_args()
    {"upload": upload, "long": long}[args.mode](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

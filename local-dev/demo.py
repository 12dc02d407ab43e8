#!/usr/bin/env python3
"""``make demo``: the main job end to end on this machine, offline.

Events (default): starts a fresh local stack (Kafka + MinIO, instance ``demo``) and the
Kafka consumer with the offline bundle, uploads pyannote's bundled sample into the
``audio`` bucket, waits for the result CloudEvent on the results topic and prints the
diarization from it: bucket -> MinIO notification -> Kafka -> consumer -> result event.

``--http``: starts the HTTP shim instead and sends the sample to ``POST /v1/diarize``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
from stack import free_port  # local-dev/stack.py, beside this script: its port map

REPO = Path(__file__).resolve().parents[1]
STACK = [sys.executable, str(REPO / "local-dev" / "stack.py")]
INSTANCE = "demo"


def _sample() -> Path:
    import pyannote.audio

    return Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"


def _start(module: str, env: dict[str, str], name: str) -> tuple[subprocess.Popen, Path]:
    log = Path(tempfile.gettempdir()) / f"diarization-demo-{name}.log"
    full_env = {**os.environ, **env, "LOG_FORMAT": "text", "PYTHONPATH": str(REPO)}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", module], env=full_env, stdout=sink, stderr=subprocess.STDOUT)
    print(f"started {name} (pid {process.pid}, log: {log})")
    return process, log


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"it exited with {process.returncode}; its log:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    sys.exit(f"not ready after {timeout:.0f} s; see {log}")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()


def _print_turns(segments: list[dict], num_speakers: int) -> None:
    print(f"\n{num_speakers} speakers, {len(segments)} turns:")
    for turn in segments:
        print(f"  {turn['start']:7.2f} - {turn['end']:7.2f}  {turn['speaker']}")


def events_demo() -> int:
    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.core.formats.json import JSONFormat
    from confluent_kafka import Consumer
    from minio import Minio

    print("starting a fresh local stack (Kafka + MinIO) ...")
    subprocess.run([*STACK, "destroy", "--name", INSTANCE], check=True, capture_output=True)
    subprocess.run([*STACK, "start", "--name", INSTANCE], check=True)
    env = dict(
        line.split("=", 1)
        for line in subprocess.run(
            [*STACK, "env", "--name", INSTANCE], check=True, capture_output=True, text=True
        ).stdout.splitlines()
    )
    probe_port = free_port()
    consumer_process, log = _start(
        "consumer.kafka.worker",
        {**env, "CONSUMER_PROBE_PORT": str(probe_port), "KAFKA_GROUP_ID": "diarization-demo"},
        "consumer",
    )
    results = Consumer(
        {
            "bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "group.id": f"demo-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        _wait_ready(f"http://127.0.0.1:{probe_port}/ready", consumer_process, log)
        print("the consumer's model is loaded and warm")
        results.subscribe([env["KAFKA_RESULTS_TOPIC"]])
        sample = _sample().read_bytes()
        key = f"demo/{time.strftime('%Y%m%d-%H%M%S')}/sample.wav"
        minio = Minio(env["S3_ENDPOINT"], env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"], secure=False)
        uploaded = time.monotonic()
        minio.put_object(env["S3_UPLOAD_BUCKET"], key, io.BytesIO(sample), len(sample), content_type="audio/wav")
        print(
            f"uploaded s3://{env['S3_UPLOAD_BUCKET']}/{key}; waiting for its result event on {env['KAFKA_RESULTS_TOPIC']} ..."
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            message = results.poll(1.0)
            if message is None or message.error():
                continue
            event = ce_kafka.from_binary(
                ce_kafka.KafkaMessage(dict(message.headers() or []), message.key(), message.value()), JSONFormat()
            )
            if event.get_subject() != f"{env['S3_UPLOAD_BUCKET']}/{key}" or event.get_type().endswith(".progress"):
                continue
            data = event.get_data()
            print(
                f"\nresult event after {time.monotonic() - uploaded:.1f} s: type={event.get_type()} id={event.get_id()}"
            )
            if "error" in data:
                print(json.dumps(data["error"], indent=2))
                return 1
            _print_turns(data["segments"], data["num_speakers"])
            print(
                f"\n{len(data['speech_segments'])} speech regions; result objects: "
                f"s3://{data['results']['bucket']}/{data['results']['json']} and {data['results']['rttm']}"
            )
            return 0
        print(f"no result event within 300 s; see {log}")
        return 1
    finally:
        results.close()
        _stop(consumer_process)
        subprocess.run([*STACK, "destroy", "--name", INSTANCE], check=False, capture_output=True)


def http_demo() -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key = secrets.token_urlsafe(24)  # the API needs a key (API_AUTH=key, the default): this run's own
    shim, log = _start("http_shim.server", {"PORT": str(port), "HOST": "127.0.0.1", "API_KEY": key}, "shim")
    try:
        _wait_ready(f"{base}/ready", shim, log)
        print(f"model loaded and warm: {requests.get(f'{base}/health', timeout=5).json()}")
        print(f"POST {base}/v1/diarize  file=sample.wav")
        with _sample().open("rb") as audio:
            response = requests.post(
                f"{base}/v1/diarize", files={"file": audio}, headers={"Authorization": f"Bearer {key}"}, timeout=600
            )
        response.raise_for_status()
        body = response.json()
        _print_turns(body["segments"], body["num_speakers"])
        return 0
    finally:
        _stop(shim)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="use the synchronous HTTP API instead of events")
    return http_demo() if parser.parse_args().http else events_demo()


if __name__ == "__main__":
    raise SystemExit(main())

"""The image that ``make image`` built runs as OpenShift runs it, and every door answers.

Tier tests/image: needs the image (``make image``, which ``make test`` runs first), buildah
and root, and starts the local stack. The image's modes run as an arbitrary UID in group 0
with no passwd entry, with the image's environment (offline, no hub token, warm-up on): an
image whose model cannot load there (a warm-up that decodes through torchcodec without
FFmpeg, a process that asks for its user's name) never becomes ready, and every test here
fails.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.containers import ARBITRARY_USER, Containers, Started, image_tool, wait_ready
from tests.support.credentials import API_AUTH, API_KEY, RECEIVER_TOKEN, SENDER_AUTH
from tests.support.media import transcode
from tests.support.processes import free_port
from tests.support.stack import Stack, TopicReader

pytestmark = pytest.mark.image

# Each mode runs once for the module (one shim with its receiver, one consumer): module-scoped
# fixtures of this module, so that its tests share one worker under pytest-xdist.


@pytest.fixture(scope="module")
def containers(built_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    """Containers of the built image; all of them stopped and removed when the module ends."""
    started = Containers(built_image, tmp_path_factory.mktemp("containers"))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def shim(containers: Containers, stack: Stack) -> Started:
    """``diarization shim`` as the events Service runs it: the API behind its key, the receiver on and
    checking its senders (the shared-token check), the stack's object store; ready."""
    port = free_port()
    env = {
        **stack.env,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_FORMAT": "json",
        "API_KEY": API_KEY,
        "RECEIVER_ENABLED": "true",
        "RECEIVER_TOKEN": RECEIVER_TOKEN,
    }
    container = containers.start("shim", env)
    return wait_ready(container, f"http://127.0.0.1:{port}/ready")


@pytest.fixture(scope="module")
def consumer(containers: Containers, stack: Stack) -> Started:
    """``diarization consumer`` on the stack's topics, in a fresh group that starts at their end, ready."""
    group = f"image-{uuid.uuid4().hex[:8]}"
    stack.move_group_to_end(group, stack.env["KAFKA_INPUT_TOPIC"])
    port = free_port()
    env = {**stack.env, "KAFKA_GROUP_ID": group, "CONSUMER_PROBE_PORT": str(port), "LOG_FORMAT": "json"}
    container = containers.start("consumer", env)
    return wait_ready(container, f"http://127.0.0.1:{port}/ready")


Sample = tuple[Path, Path]

# Run inside the image: who the process is, and whether torchcodec can decode pyannote's sample.
_PROBE = """
import json, os, pwd, tempfile
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()  # the probe's torch, like the service's, asks no name
import pyannote.audio
sample = os.path.join(os.path.dirname(pyannote.audio.__file__), "sample", "sample.wav")
try:
    pwd.getpwuid(os.getuid())
    passwd = True
except KeyError:
    passwd = False
try:
    from torchcodec.decoders import AudioDecoder
    AudioDecoder(sample).get_all_samples()
    torchcodec = None
except Exception as exc:
    torchcodec = f"{type(exc).__name__}: {str(exc)[:200]}"
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "passwd": passwd, "torchcodec_error": torchcodec}))
"""


def reference_speech(rttm: Path) -> float:
    """Seconds of speech in an RTTM (overlaps counted once)."""
    turns = sorted(
        (float(fields[3]), float(fields[3]) + float(fields[4]))
        for fields in map(str.split, rttm.read_text().splitlines())
    )
    total, end = 0.0, 0.0
    for start, stop in turns:
        total += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return total


def started_settings(container_lines: list[dict]) -> dict:
    """The settings a mode logged at start."""
    (line,) = [line for line in container_lines if "settings" in line]
    return line["settings"]


def model_ready(started: Started) -> dict:
    """The engine's ``model ready`` log line."""
    (line,) = [line for line in started.container.log_lines() if line.get("message") == "model ready"]
    return line


def test_the_image_runs_as_an_arbitrary_uid_offline_without_ffmpeg(containers: Containers, report) -> None:
    """The conditions the tier claims: no passwd entry for the UID, no FFmpeg for torchcodec, no hub."""
    config = containers.config()
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in env
    assert config["User"] == "1001"
    probe = containers.run(["python", "-c", _PROBE])
    assert probe.returncode == 0, probe.stdout + probe.stderr
    facts = json.loads(probe.stdout.strip().splitlines()[-1])
    uid, gid = (int(part) for part in ARBITRARY_USER.split(":"))
    assert (facts["uid"], facts["gid"], facts["passwd"]) == (uid, gid, False)
    assert facts["torchcodec_error"], "torchcodec decodes in the image: the image was meant to have no FFmpeg"
    built = [b for b in image_tool.recorded_builds(image_tool.store()) if b["tag"] == image_tool.LOCAL_TAG]
    assert built, "no build of the image was recorded"
    last, slowest = built[-1], max(built, key=lambda b: float(b["seconds"]))
    report(
        f"{image_tool.LOCAL_TAG}: {int(last['size_bytes']) / 1e9:.2f} GB, base {last['base']}"
        f"{' (Debian stand-in, NOT UBI)' if last['stand_in_base'] else ''}"
    )
    report(
        f"last build {last['seconds']} s ({int(last['steps']) - int(last['cached_steps'])} of {last['steps']} steps "
        f"ran); slowest recorded {slowest['seconds']} s ({int(slowest['steps']) - int(slowest['cached_steps'])} ran)"
    )
    report(f"torchcodec in the image: {facts['torchcodec_error'].splitlines()[0]}")


def test_the_shim_becomes_ready_with_the_warm_up_on(shim: Started, report) -> None:
    assert requests.get(f"{shim.url}/health", timeout=10).json() == {
        "status": "healthy",
        "model_loaded": True,
        "device": "cpu",
    }
    assert requests.get(f"{shim.url}/ready", timeout=10).status_code == 200
    lines = shim.container.log_lines()
    assert started_settings(lines)["engine"]["warmup"] is True
    assert "Permission denied" not in shim.container.log_tail(10**6), "the shim writes where its UID may not"
    ready = model_ready(shim)
    report(
        f"shim: {shim.ready_seconds:.1f} s from container start to /ready; model load {ready['load_seconds']} s, "
        f"warm-up {ready['warmup_seconds']} s"
    )


def test_the_shim_diarizes_wav_and_mp3(shim: Started, sample: Sample) -> None:
    wav = sample[0].read_bytes()
    for name, data in (("sample.wav", wav), ("sample.mp3", transcode(wav, "mp3"))):
        response = requests.post(f"{shim.url}/v1/diarize", files={"file": (name, data)}, headers=API_AUTH, timeout=300)
        assert response.status_code == 200, f"{name}: {response.status_code} {response.text[:500]}"
        assert response.json()["num_speakers"] == 2, name


def test_the_shim_detects_speech(shim: Started, sample: Sample) -> None:
    response = requests.post(
        f"{shim.url}/v1/vad", files={"file": ("sample.wav", sample[0].read_bytes())}, headers=API_AUTH, timeout=300
    )
    assert response.status_code == 200, response.text[:500]
    speech = sum(region["end"] - region["start"] for region in response.json()["speech_segments"])
    # the engine's detection error on this sample is about 1 % (tests/model): within 10 % of the reference
    assert speech == pytest.approx(reference_speech(sample[1]), rel=0.1)


def test_the_openai_style_door(shim: Started, sample: Sample) -> None:
    response = requests.post(
        f"{shim.url}/v1/audio/diarization",
        files={"file": ("sample.wav", sample[0].read_bytes())},
        data={"model": "whisper-1"},
        headers=API_AUTH,
        timeout=300,
    )
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert answer["num_speakers"] == 2 and answer["model"] != "whisper-1" and answer["segments"]


def test_the_receiver_answers_a_binary_cloudevent(shim: Started, stack: Stack, sample: Sample) -> None:
    key = f"image-tier/{uuid.uuid4().hex}.wav"
    stack.upload(key, sample[0].read_bytes())
    event_id = uuid.uuid4().hex
    response = requests.post(
        f"{shim.url}/",
        headers={
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": "/tests/image",
            "ce-type": "dev.diarization.audio.uploaded",
            "content-type": "application/json",
            **SENDER_AUTH,
        },
        json={"bucket": stack.env["S3_UPLOAD_BUCKET"], "key": key},
        timeout=300,
    )
    assert response.status_code in (200, 202), response.text[:500]
    if response.status_code == 200:  # no K_SINK here: the result is the reply
        assert response.headers["ce-type"] == "dev.diarization.job.completed", response.text[:500]
        assert response.json()["num_speakers"] == 2


def test_an_upload_gives_a_completed_event_from_the_consumer(
    consumer: Started, stack: Stack, sample: Sample, report: Callable[[str], None]
) -> None:
    key = f"image-tier/{uuid.uuid4().hex}.wav"
    subject = f"{stack.env['S3_UPLOAD_BUCKET']}/{key}"
    reader = TopicReader(stack.bootstrap, stack.env["KAFKA_RESULTS_TOPIC"])
    try:
        stack.upload(key, sample[0].read_bytes())
        try:
            events = reader.wait_for(
                lambda events: any(e.subject == subject and not e.type.endswith(".progress") for e in events),
                timeout=300,
                what=f"the result of {subject}",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{consumer.container.log_tail()}") from None
    finally:
        reader.close()
    (result,) = [e for e in events if e.subject == subject and not e.type.endswith(".progress")]
    assert result.type == "dev.diarization.job.completed", result.data
    assert result.data["num_speakers"] == 2
    assert "Permission denied" not in consumer.container.log_tail(10**6), "the consumer writes where its UID may not"
    ready = model_ready(consumer)
    report(
        f"consumer: {consumer.ready_seconds:.1f} s from container start to /ready; model load "
        f"{ready['load_seconds']} s, warm-up {ready['warmup_seconds']} s"
    )

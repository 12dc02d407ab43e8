"""Known speakers, embeddings and confidence through the sync doors, on the real engine.

Three generated voices are enrolled from clips of their own (text the conversations never
use); a conversation of four voices is then diarized with their voiceprints: the three
are named, the fourth voice, never enrolled, keeps an anonymous label.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from prometheus_client import REGISTRY

import schemas
from http_shim import create_app
from tests.support.conversation import ENROLMENT_TEXT, VOICES, Conversation, conversation, speak
from tests.support.credentials import authorized

NAMES = {"ada": VOICES[0], "grace": VOICES[1], "linus": VOICES[2]}  # VOICES[3] is never enrolled


@pytest.fixture(scope="module")
def client(analyzer, settings):
    return authorized(create_app(analyzer, settings).test_client())


def wav_bytes(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, 16_000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def post(client, path: str, audio: bytes, **fields):
    data = {"file": (io.BytesIO(audio), "clip.wav"), **fields}
    return client.post(path, data=data, content_type="multipart/form-data")


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    return {name: wav_bytes(speak(voice, ENROLMENT_TEXT)) for name, voice in NAMES.items()}


@pytest.fixture(scope="module")
def voiceprints(client, clips) -> dict[str, dict]:
    prints = {}
    for name, clip in clips.items():
        response = post(client, "/v1/voiceprints", clip)
        assert response.status_code == 200, response.get_data(as_text=True)
        prints[name] = response.get_json()
    return prints


@pytest.fixture(scope="module")
def meeting() -> Conversation:
    return conversation(4, 60, seed=11)


def reference_voice(talk: Conversation, segments: list[dict]) -> dict[str, str]:
    """Each output speaker's voice: the reference voice it shares most time with."""
    shared: dict[str, Counter[str]] = {}
    for segment in segments:
        for turn in talk.turns:
            overlap = min(segment["end"], turn.end) - max(segment["start"], turn.start)
            if overlap > 0:
                shared.setdefault(segment["speaker"], Counter())[turn.speaker] += overlap
    return {speaker: counts.most_common(1)[0][0] for speaker, counts in shared.items()}


def test_a_voiceprint_is_a_small_document_of_this_service_s_embedding_model(voiceprints, engine):
    for document in voiceprints.values():
        assert not list(schemas.validator("voiceprint").iter_errors(document))
        assert document["embedding_model"] == engine.embedding_model
        assert document["dimension"] == len(document["embedding"]) == 192
        assert 3.0 <= document["speech_seconds"] <= 60.0
        assert len(json.dumps(document)) < 8192


@pytest.fixture(scope="module")
def named(client, voiceprints, meeting) -> dict:
    """One diarization of the meeting with the three voiceprints and the embeddings asked for
    (one run serves several tests: each run of the engine costs seconds)."""
    response = post(
        client, "/v1/diarize", meeting.wav.read_bytes(), voiceprints=json.dumps(voiceprints), return_embeddings="true"
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_enrolled_voices_are_named_and_the_stranger_is_not(named, meeting):
    voices = reference_voice(meeting, named["segments"])
    assert named["num_speakers"] == 4
    assert set(named["identified"]) == set(NAMES)
    for name, voice in NAMES.items():
        assert voices[name] == voice, (name, voices)
        assert named["identified"][name]["similarity"] >= 0.6
    stranger = [speaker for speaker, voice in voices.items() if voice == VOICES[3]]
    assert stranger and all(speaker.startswith("SPEAKER_") for speaker in stranger)


def test_the_openai_door_takes_known_speaker_names_with_clips_or_voiceprints(client, clips, voiceprints, meeting):
    clip_url = "data:audio/wav;base64," + base64.b64encode(clips["ada"]).decode()
    data = {
        "file": (io.BytesIO(meeting.wav.read_bytes()), "meeting.wav"),
        "known_speaker_names[]": ["ada", "grace"],
        "known_speaker_references[]": [clip_url, json.dumps(voiceprints["grace"])],
    }
    response = client.post("/v1/audio/diarization", data=data, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body["identified"]) == {"ada", "grace"}
    assert "embeddings" not in body and 0.0 <= body["confidence"]["mean"] <= 1.0  # not asked for
    voices = reference_voice(meeting, body["segments"])
    assert voices["ada"] == NAMES["ada"] and voices["grace"] == NAMES["grace"]


def test_embeddings_come_when_asked_for(named, engine):
    assert named["embeddings"]["embedding_model"] == engine.embedding_model
    speakers = named["embeddings"]["speakers"]
    # keyed by the labels the turns carry, names included
    assert set(speakers) == {s["speaker"] for s in named["segments"]} >= set(NAMES)
    vectors = np.array(list(speakers.values()))
    assert vectors.shape == (4, 192) and np.isfinite(vectors).all()
    # four different voices: no two centroids alike
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    assert similarity[~np.eye(4, dtype=bool)].max() < 0.9


def test_every_turn_has_a_confidence_and_the_result_a_summary(client, named):
    confidences = [s["confidence"] for s in named["segments"]]
    assert confidences and all(0.0 <= c <= 1.0 for c in confidences)
    summary = named["confidence"]
    assert 0.0 <= summary["mean"] <= 1.0
    assert summary["low_turns"] == sum(c < 0.5 for c in confidences)
    # clean, turn-taking synthetic voices: the engine is sure of most of the talk
    assert summary["mean"] >= 0.7
    # each stage's time is counted in /metrics
    metrics = client.get("/metrics").get_data(as_text=True)
    for stage in ("decode", "segmentation", "embeddings", "clustering", "confidence"):
        line = next(
            line
            for line in metrics.splitlines()
            if line.startswith(f'diarization_stage_seconds_total{{stage="{stage}",task="diarization"}}')
        )
        assert float(line.split()[-1]) > 0, line


def tampered(document: dict, **changes) -> dict:
    return {**document, **changes}


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"voiceprints": "not json"}, 400, "invalid_voiceprint"),
        ({"voiceprints": json.dumps({"SPEAKER_00": "x"})}, 400, "invalid_voiceprint"),
        (
            {"voiceprints": json.dumps({"ada": {"type": "diarization-voiceprint", "version": 1}})},
            400,
            "invalid_voiceprint",
        ),
        ("too many", 400, "too_many_voiceprints"),
        ("other model", 422, "voiceprint_model_mismatch"),
    ],
)
def test_bad_voiceprints_are_refused_with_their_code(client, voiceprints, meeting, fields, status, code):
    if fields == "too many":
        fields = {"voiceprints": json.dumps({f"person {i}": voiceprints["ada"] for i in range(51)})}
    elif fields == "other model":
        fields = {"voiceprints": json.dumps({"ada": tampered(voiceprints["ada"], embedding_model="0" * 64)})}
    response = post(client, "/v1/diarize", meeting.wav.read_bytes(), **fields)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code


def test_unusable_enrolment_clips_are_refused_with_their_code(client):
    short = wav_bytes(speak(VOICES[0], "Hello there."))
    response = post(client, "/v1/voiceprints", short)
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "voiceprint_too_short")

    dialogue = conversation(2, 30, seed=5).wav.read_bytes()
    response = post(client, "/v1/voiceprints", dialogue)
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "voiceprint_multiple_speakers")

    long = wav_bytes(np.tile(speak(VOICES[1], ENROLMENT_TEXT), 10))
    response = post(client, "/v1/voiceprints", long)
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "audio_too_long")
    assert "60" in response.get_json()["error"]["message"]

    url = "data:audio/wav;base64," + base64.b64encode(short).decode()
    response = client.post(
        "/v1/audio/diarization",
        data={
            "file": (io.BytesIO(dialogue), "d.wav"),
            "known_speaker_names[]": ["ada"],
            "known_speaker_references[]": [url],
        },
        content_type="multipart/form-data",
    )
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "voiceprint_too_short")


def test_too_many_data_url_references_are_refused_before_any_is_enrolled(client, clips, meeting):
    clip_url = "data:audio/wav;base64," + base64.b64encode(clips["ada"]).decode()
    runs = REGISTRY.get_sample_value("diarization_jobs_total", {"task": "diarization", "outcome": "completed"})
    response = client.post(
        "/v1/audio/diarization",
        data={
            "file": (io.BytesIO(meeting.wav.read_bytes()), "meeting.wav"),
            "known_speaker_names[]": [f"person {i}" for i in range(200)],
            "known_speaker_references[]": [clip_url] * 200,
        },
        content_type="multipart/form-data",
    )
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "too_many_voiceprints")
    after = REGISTRY.get_sample_value("diarization_jobs_total", {"task": "diarization", "outcome": "completed"})
    assert after == runs, "clips were enrolled (engine runs) before the count was checked"

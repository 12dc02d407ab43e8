"""The synchronous API through Flask's test client, on the real engine."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time

import pytest

from consumer.analyzer import Analyzer
from consumer.config import AudioLimits, EngineSettings, Secret, SettingsError
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.errors import ModelLoadError
from consumer.jobs import JobLayout, Jobs
from consumer.storage import ObjectStore
from http_shim import create_app
from tests.support import media
from tests.support.audio_bytes import encode, tone
from tests.support.credentials import authorized
from tests.support.hostile import long_silent_flac


@pytest.fixture(scope="module")
def client(analyzer, settings):
    return authorized(create_app(analyzer, settings).test_client())


@pytest.fixture(scope="module")
def sample_bytes(sample) -> bytes:
    return sample[0].read_bytes()


def _upload(data: bytes, name: str = "audio.wav", **fields):
    return {"file": (io.BytesIO(data), name), **{k: str(v) for k, v in fields.items()}}


def _error(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def test_health_has_the_previous_servers_fields(client, engine):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "healthy", "model_loaded": True, "device": engine.device}


def test_ready_when_the_model_is_warm(client):
    assert client.get("/ready").status_code == 200


def test_diarize_answers_like_the_previous_server(client, sample_bytes):
    response = client.post("/v1/diarize", data=_upload(sample_bytes), content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    # the previous server's fields, each turn's confidence added beside them
    assert set(body) == {"segments", "num_speakers", "confidence"}
    assert body["num_speakers"] == 2
    assert body["segments"] and all(set(s) == {"start", "end", "speaker", "confidence"} for s in body["segments"])
    assert {s["speaker"] for s in body["segments"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(0 <= s["start"] < s["end"] <= 30.1 for s in body["segments"])
    assert response.headers["X-Request-ID"]


def test_diarize_with_speaker_hints_and_exclusive(client, sample_bytes):
    response = client.post(
        "/v1/diarize", data=_upload(sample_bytes, num_speakers=3, exclusive="true"), content_type="multipart/form-data"
    )
    assert response.status_code == 200
    assert response.get_json()["num_speakers"] == 3


@pytest.mark.parametrize("how", ["accept", "query", "form"])
def test_diarize_as_rttm(client, sample_bytes, how):
    headers = {"Accept": "text/rttm"} if how == "accept" else {}
    url = "/v1/diarize?format=rttm" if how == "query" else "/v1/diarize"
    fields = {"format": "rttm"} if how == "form" else {}
    response = client.post(
        url,
        data=_upload(sample_bytes, name="my sample.wav", **fields),
        headers=headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert response.mimetype == "text/rttm"
    lines = response.get_data(as_text=True).splitlines()
    assert lines and all(line.startswith("SPEAKER my_sample 1 ") and len(line.split()) == 10 for line in lines)


def test_vad_answers_like_the_previous_server(client, sample_bytes):
    response = client.post("/v1/vad", data=_upload(sample_bytes), content_type="multipart/form-data")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"speech_segments"}
    assert body["speech_segments"] and all(set(s) == {"start", "end"} for s in body["speech_segments"])


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"min_speakers": 3, "max_speakers": 2}, "invalid_speaker_options"),
        ({"num_speakers": "two"}, "invalid_speaker_options"),
        ({"num_speakers": "-1"}, "invalid_speaker_options"),
        ({"num_speakers": "0"}, "invalid_speaker_options"),
        ({"num_speakers": "2.5"}, "invalid_speaker_options"),
        ({"num_speakers": 2, "max_speakers": 3}, "invalid_speaker_options"),
        ({"exclusive": "perhaps"}, "invalid_request"),
        ({"format": "xml"}, "invalid_request"),
    ],
)
def test_invalid_options_are_400(client, fields, code):
    response = client.post("/v1/diarize", data=_upload(encode(tone(1)), **fields), content_type="multipart/form-data")
    assert response.status_code == 400
    assert _error(response) == code


def test_missing_or_doubled_file_is_400(client):
    response = client.post("/v1/diarize", data={"num_speakers": "2"}, content_type="multipart/form-data")
    assert (response.status_code, _error(response)) == (400, "missing_file")
    two = {"file": [(io.BytesIO(encode(tone(1))), "a.wav"), (io.BytesIO(encode(tone(1))), "b.wav")]}
    response = client.post("/v1/vad", data=two, content_type="multipart/form-data")
    assert (response.status_code, _error(response)) == (400, "missing_file")


def test_wrong_content_type_is_415(client):
    response = client.post("/v1/diarize", data=encode(tone(1)), content_type="audio/wav")
    assert (response.status_code, _error(response)) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"this is plain text, not audio" * 10, 415, "not_audio"),
        (encode(tone(0.2)), 422, "audio_too_short"),
        (encode(tone(2))[:3000], 422, "corrupt_audio"),
    ],
)
def test_bad_audio_gets_its_code(client, data, status, code):
    response = client.post("/v1/diarize", data=_upload(data), content_type="multipart/form-data")
    assert (response.status_code, _error(response)) == (status, code)


def test_unknown_route_and_method_are_json(client):
    assert _error(client.get("/v2/nothing")) == "not_found"
    assert _error(client.get("/v1/diarize")) == "method_not_allowed"


def test_body_over_the_limit_is_413_from_content_length(analyzer, settings):
    small = dataclasses.replace(settings, audio=AudioLimits(max_bytes=10_000))
    client = authorized(create_app(Analyzer(analyzer.engine, small.audio), small).test_client())
    response = client.post("/v1/diarize", data=_upload(encode(tone(3))), content_type="multipart/form-data")
    assert (response.status_code, _error(response)) == (413, "payload_too_large")


def test_api_key_guards_the_api_but_not_the_probes(analyzer, settings):
    keyed = dataclasses.replace(settings, http=dataclasses.replace(settings.http, api_key=Secret("k3y-for-tests")))
    client = create_app(analyzer, keyed).test_client()

    def upload() -> dict:
        return _upload(encode(tone(1)))  # a fresh stream per request

    assert _error(client.post("/v1/vad", data=upload(), content_type="multipart/form-data")) == "unauthorized"
    wrong = client.post(
        "/v1/vad", data=upload(), headers={"Authorization": "Bearer nope"}, content_type="multipart/form-data"
    )
    assert wrong.status_code == 401
    right = client.post(
        "/v1/vad", data=upload(), headers={"Authorization": "Bearer k3y-for-tests"}, content_type="multipart/form-data"
    )
    assert right.status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    assert client.get("/metrics").status_code == 401


def test_without_a_key_the_api_is_closed_unless_opened_on_purpose(analyzer, settings):
    unkeyed = dataclasses.replace(settings, http=dataclasses.replace(settings.http, api_key=Secret("")))
    with pytest.raises(SettingsError, match="API_KEY is not set"):
        create_app(analyzer, unkeyed)
    opened = dataclasses.replace(unkeyed, http=dataclasses.replace(unkeyed.http, api_auth="none"))
    client = create_app(analyzer, opened).test_client()
    assert client.post("/v1/vad", data=_upload(encode(tone(1))), content_type="multipart/form-data").status_code == 200
    assert client.get("/metrics").status_code == 200
    both = dataclasses.replace(settings, http=dataclasses.replace(settings.http, api_auth="none"))
    with pytest.raises(SettingsError, match="choose one"):
        create_app(analyzer, both)


def test_model_not_loaded_yet(settings):
    engine = PyannoteEngine(settings.engine)  # real engine, load() not called yet
    client = authorized(create_app(Analyzer(engine, settings.audio), settings).test_client())
    assert client.get("/health").get_json()["model_loaded"] is False
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.get_json()["status"] == "loading"
    response = client.post("/v1/diarize", data=_upload(encode(tone(1))), content_type="multipart/form-data")
    assert (response.status_code, _error(response)) == (503, "model_not_ready")
    assert response.headers["Retry-After"]


def test_model_that_failed_to_load_is_reported_by_ready(settings):
    engine = PyannoteEngine(EngineSettings(model="/nonexistent/model"))
    with pytest.raises(ModelLoadError):
        engine.load()
    client = authorized(create_app(Analyzer(engine, settings.audio), settings).test_client())
    body = client.get("/ready").get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "model_load_failed"
    # and the API says why it cannot serve, not that the model is still loading
    response = client.post("/v1/diarize", data=_upload(encode(tone(1))), content_type="multipart/form-data")
    assert (response.status_code, _error(response)) == (503, "model_load_failed")
    # probes and answers are public (the Route): the path and the exception's text stay in the log
    assert "/nonexistent" not in json.dumps(body) and "/nonexistent" not in response.get_data(as_text=True)
    assert "/nonexistent" in engine.error.message


def test_requests_beyond_the_queue_are_shed_with_503(engine, settings, sample_bytes):
    analyzer = Analyzer(engine, settings.audio, max_pending=0)
    client = authorized(create_app(analyzer, settings).test_client())
    first = threading.Thread(
        target=client.post,
        args=("/v1/diarize",),
        kwargs={"data": _upload(sample_bytes), "content_type": "multipart/form-data"},
    )
    first.start()
    deadline = time.monotonic() + 30
    while analyzer._in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert analyzer._in_flight == 1, "the first request never started"
    response = client.post("/v1/vad", data=_upload(sample_bytes), content_type="multipart/form-data")
    first.join()
    assert (response.status_code, _error(response)) == (503, "busy")


def test_metrics_expose_requests_audio_seconds_and_real_time_factor(client, sample_bytes):
    client.post("/v1/vad", data=_upload(sample_bytes), content_type="multipart/form-data")
    text = client.get("/metrics").get_data(as_text=True)
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "diarization_audio_seconds_total",
        "diarization_real_time_factor_bucket",
        "diarization_jobs_total",
        "diarization_model_ready 1.0",
    ):
        assert name in text, name


# --- compressed formats and video through the sync door (media made with ffmpeg at test time)


@pytest.mark.parametrize(
    ("name", "build", "fields", "status", "outcome"),
    [
        ("speech.mp3", lambda: media.truncated(media.speech_tone("mp3", 4.0)), {}, 200, 2.1),
        ("speech.mp3", lambda: media.with_garbage_id3(media.speech_tone("mp3")), {}, 200, 3.0),
        ("speech.aac", media.adts_noise, {}, 422, "corrupt_audio"),
        ("speech.m4a", lambda: media.without_moov(media.speech_tone("m4a")), {}, 422, "corrupt_audio"),
        ("speech.m4a", lambda: media.moov_past_the_end(media.speech_tone("m4a")), {}, 422, "corrupt_audio"),
        ("video.mp4", media.video_only, {}, 422, "no_audio_stream"),
        ("tracks.mka", media.eight_audio_streams, {"audio_stream": "7"}, 200, 3.1),
        ("tracks.mka", media.eight_audio_streams, {"audio_stream": "8"}, 422, "no_audio_stream"),
        ("tracks.mka", media.eight_audio_streams, {"audio_stream": "x"}, 400, "invalid_request"),
        ("packets.mkv", media.tiny_packets, {}, 200, 12.5),
        ("claims.opus", lambda: media.opus_claiming(hours=10), {}, 200, 3.0),
        ("audio.wav", lambda: media.polyglot()[0], {}, 200, 3.0),
        ("audio.mp3", media.zip_of_mp3, {}, 415, "not_audio"),
        ("audio.mkv", media.unknown_codec, {}, 422, "unsupported_codec"),
        ("meeting.mp4", media.video_with_audio, {}, 200, 3.0),
    ],
    ids=[
        "truncated mp3",
        "10 MB ID3",
        "ADTS noise",
        "no moov",
        "moov past the end",
        "video only",
        "audio_stream 7 of 8",
        "audio_stream 8 of 8",
        "audio_stream x",
        "100000 packets",
        "opus claiming 10 h",
        "WAV + MP4 polyglot",
        "zip named mp3",
        "unknown codec",
        "MP4 video with audio",
    ],
)
def test_media_get_their_exact_answer(client, name, build, fields, status, outcome):
    """``outcome``: the error code, or for a 200 the decoded length that no speech region may pass."""
    response = client.post("/v1/vad", data=_upload(build(), name, **fields), content_type="multipart/form-data")
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 200:
        regions = response.get_json()["speech_segments"]
        assert all(0 <= r["start"] < r["end"] <= outcome + 0.05 for r in regions), regions
    else:
        assert _error(response) == outcome


def test_the_next_valid_input_still_completes_after_the_hostile_media(client):
    for data in (media.adts_noise(), media.video_only(), media.zip_of_mp3()):
        assert client.post("/v1/vad", data=_upload(data), content_type="multipart/form-data").status_code >= 400
    response = client.post(
        "/v1/diarize", data=_upload(media.speech_tone("m4a"), "x.m4a"), content_type="multipart/form-data"
    )
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("jobs", [False, True], ids=["without-jobs", "with-jobs"])
def test_audio_longer_than_the_sync_limit_is_refused_naming_the_door_that_takes_it(analyzer, settings, jobs):
    """At the default limits: an hour and a minute is too long to answer inside a request's
    timeout, not too long for the service; the error says where it goes instead."""
    configured = dataclasses.replace(settings, http=dataclasses.replace(settings.http, jobs_enabled=jobs))
    store = ObjectStore(configured.storage)  # never called: the audio is refused before any job is stored
    client = authorized(
        create_app(analyzer, configured, jobs=Jobs(store, JobLayout.from_settings(configured.storage))).test_client()
    )
    assert configured.http.sync_max_seconds == 3600 < configured.audio.max_seconds
    long_audio = long_silent_flac(3600 + 60)
    for path in ("/v1/diarize", "/v1/vad", "/v1/audio/diarization"):
        response = client.post(path, data={"file": (io.BytesIO(long_audio), "hour.flac")})
        body = response.get_json()
        assert (response.status_code, body["error"]["code"]) == (422, "audio_too_long"), (path, body)
        message = body["error"]["message"]
        assert "SYNC_MAX_AUDIO_SECONDS" in message
        assert ("POST /v1/jobs" in message) is jobs, message
        assert ("audio.uploaded event" in message) is not jobs, message

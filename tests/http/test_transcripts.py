"""Transcripts with speakers through the sync doors, on the real engine and a conversation whose words are known."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from http_shim import create_app
from tests.support.credentials import authorized
from tests.support.spoken_words import SpokenSentence, spoken_conversation, srt, verbose_json


@pytest.fixture(scope="module")
def client(analyzer, settings):
    return authorized(create_app(analyzer, settings).test_client())


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> tuple[bytes, tuple[SpokenSentence, ...]]:
    wav = tmp_path_factory.mktemp("spoken") / "meeting.wav"
    sentences = spoken_conversation(wav)
    return wav.read_bytes(), sentences


def post(client, path: str, audio: bytes, transcript: bytes | None = None, **fields):
    data = {"file": (io.BytesIO(audio), "meeting.wav"), **{k: str(v) for k, v in fields.items()}}
    if transcript is not None:
        data["transcript"] = (io.BytesIO(transcript), "transcript")
    return client.post(path, data=data, content_type="multipart/form-data")


def word_accuracy(words: list[dict], segments: list[dict], sentences: tuple[SpokenSentence, ...]) -> float:
    """Share of words whose speaker is the one the diarization's speaker maps to (one-to-one by shared time)."""
    truth = [w for s in sentences for w in s.words]
    assert len(words) == len(truth)
    labels = sorted({s["speaker"] for s in segments})
    voices = sorted({w.speaker for w in truth})
    shared = np.zeros((len(labels), len(voices)))
    for seg in segments:
        for word in truth:
            shared[labels.index(seg["speaker"]), voices.index(word.speaker)] += max(
                0.0, min(seg["end"], word.end) - max(seg["start"], word.start)
            )
    rows, cols = linear_sum_assignment(-shared)
    mapping = {labels[r]: voices[c] for r, c in zip(rows, cols, strict=True)}
    right = sum(mapping.get(got["speaker"]) == want.speaker for got, want in zip(words, truth, strict=True))
    return right / len(truth)


def test_every_word_gets_its_speaker_from_a_verbose_json_transcript(client, spoken):
    audio, sentences = spoken
    response = post(client, "/v1/diarize", audio, json.dumps(verbose_json(sentences)).encode())
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"segments", "num_speakers", "confidence", "transcript"}
    assert body["num_speakers"] == 3
    words = body["transcript"]["words"]
    assert [w["word"] for w in words] == [w.text for s in sentences for w in s.words]
    accuracy = word_accuracy(words, body["segments"], sentences)
    print(f"word attribution accuracy: {accuracy:.3f} over {len(words)} words")
    assert accuracy >= 0.95
    # a sentence is one speaker's: its segment carries the speaker of its words
    for segment, sentence in zip(body["transcript"]["segments"], sentences, strict=True):
        assert segment["text"] == sentence.text
        own = [w["speaker"] for w in words if sentence.start <= w["start"] and w["end"] <= sentence.end]
        assert segment["speaker"] == max(set(own), key=own.count)


@pytest.mark.parametrize("path", ["/v1/diarize", "/v1/audio/diarization"])
def test_srt_in_diarized_json_out(client, spoken, path):
    audio, sentences = spoken
    response = post(client, path, audio, srt(sentences).encode(), response_format="diarized_json")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["task"] == "transcribe" and abs(body["duration"] - sentences[-1].end) < 2.0
    assert [s["text"] for s in body["segments"]] == [s.text for s in sentences]
    assert all(s["type"] == "transcript.text.segment" and s["speaker"].startswith("SPEAKER_") for s in body["segments"])
    # consecutive sentences of one voice share a label, a change of voice changes it
    same_voice = [a.words[0].speaker == b.words[0].speaker for a, b in itertools.pairwise(sentences)]
    same_label = [a["speaker"] == b["speaker"] for a, b in itertools.pairwise(body["segments"])]
    agree = sum(x == y for x, y in zip(same_voice, same_label, strict=True)) / len(same_voice)
    assert agree >= 0.9, (same_voice, same_label)


def test_subtitles_name_the_speakers(client, spoken):
    audio, sentences = spoken
    response = post(client, "/v1/diarize", audio, json.dumps(verbose_json(sentences)).encode(), format="vtt")
    assert response.status_code == 200 and response.mimetype == "text/vtt"
    text = response.get_data(as_text=True)
    assert text.startswith("WEBVTT\n\n")
    assert text.count("<v SPEAKER_") == len(sentences)


def test_without_a_transcript_the_formats_carry_the_turns(client, spoken):
    audio, _ = spoken
    response = post(client, "/v1/audio/diarization", audio, model="whisper-1")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"model", "duration", "num_speakers", "segments", "confidence"}
    assert body["model"] == "offline-default" and body["num_speakers"] == 3
    srt = post(client, "/v1/audio/diarization", audio, response_format="srt")
    assert srt.mimetype == "application/x-subrip"
    cues = srt.get_data(as_text=True).strip().split("\n\n")
    assert len(cues) == len(body["segments"])
    assert all(cue.split("\n")[2] == seg["speaker"] for cue, seg in zip(cues, body["segments"], strict=True))


@pytest.mark.parametrize(
    ("transcript", "status", "code"),
    [
        (b"not a transcript", 400, "invalid_transcript"),
        (
            b'{"segments": [{"start": 3, "end": 4, "text": "b"}, {"start": 1, "end": 2, "text": "a"}]}',
            400,
            "invalid_transcript",
        ),
        (b'{"segments": [{"start": 0, "end": 4000, "text": "far too long"}]}', 422, "transcript_mismatch"),
    ],
)
def test_bad_transcripts_get_their_codes(client, spoken, transcript, status, code):
    audio, _ = spoken
    response = post(client, "/v1/diarize", audio, transcript)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_an_unknown_response_format_is_refused(client, spoken):
    response = post(client, "/v1/audio/diarization", spoken[0], response_format="text")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_request"

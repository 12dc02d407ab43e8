"""Voiceprints: the document, the rules for reading one, enrolment, and matching (pure logic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import schemas
from consumer.engine import EngineResult, SpeakerTurn, SpeechRegion
from consumer.engine.identity import MATCH_MARGIN, MATCH_THRESHOLD, check_model, identify, make_voiceprint
from consumer.errors import (
    InvalidVoiceprintError,
    TooManyVoiceprintsError,
    VoiceprintModelMismatchError,
    VoiceprintSpeakersError,
    VoiceprintTooShortError,
)
from consumer.options import parse_options
from consumer.voiceprints import MAX_VOICEPRINTS, Voiceprint, parse_known_speakers, parse_voiceprint

MODEL = "ab" * 32
RNG = np.random.default_rng(7)
VOICES = {name: RNG.normal(size=192).astype(np.float32) for name in ("alice", "bob", "carol", "dave")}


def voiceprint(vector: np.ndarray, model: str = MODEL) -> Voiceprint:
    return Voiceprint(tuple(float(x) for x in vector), model, 10.0, "offline-default")


def result(centroids: dict[str, np.ndarray], seconds: dict[str, float] | None = None) -> EngineResult:
    turns, start = [], 0.0
    for label in centroids:
        length = (seconds or {}).get(label, 5.0)
        turns.append(SpeakerTurn(start, start + length, label, 0.9))
        start += length + 1.0
    return EngineResult(tuple(turns), (SpeechRegion(0.0, start),), len(centroids), start, 1.0, centroids=centroids)


def near(vector: np.ndarray, noise: float = 0.3) -> np.ndarray:
    return vector + noise * RNG.normal(size=vector.shape).astype(np.float32)


def test_the_document_round_trips_and_matches_its_schema():
    document = voiceprint(VOICES["alice"]).to_dict()
    assert not list(schemas.validator("voiceprint").iter_errors(document))
    assert parse_voiceprint(json.dumps(document)) == parse_voiceprint(document) == voiceprint(VOICES["alice"])


@pytest.mark.parametrize(
    "change",
    [
        {"type": "something-else"},
        {"version": 2},
        {"embedding": []},
        {"embedding": [0.0] * 192},
        {"embedding": [1.0, float("nan")]},
        {"embedding": ["1"] * 192},
        {"embedding": [True] * 192},
        {"dimension": 191},
        {"embedding_model": "not-a-digest"},
        {"speech_seconds": -1},
        {"speech_seconds": "ten"},
    ],
)
def test_a_malformed_voiceprint_is_refused(change):
    document = {**voiceprint(VOICES["alice"]).to_dict(), **change}
    with pytest.raises(InvalidVoiceprintError):
        parse_voiceprint(document, "alice")


@pytest.mark.parametrize("label", ["", " alice", "SPEAKER_00", "SPEAKER_7", "a" * 65, "tab\there"])
def test_unusable_names_are_refused(label):
    with pytest.raises(InvalidVoiceprintError):
        parse_known_speakers({label: voiceprint(VOICES["alice"]).to_dict()})


def test_fifty_voiceprints_are_taken_and_fifty_one_refused():
    one = voiceprint(VOICES["alice"]).to_dict()
    assert len(parse_known_speakers({f"p{i}": one for i in range(MAX_VOICEPRINTS)})) == MAX_VOICEPRINTS
    with pytest.raises(TooManyVoiceprintsError):
        parse_known_speakers({f"p{i}": one for i in range(MAX_VOICEPRINTS + 1)})


@pytest.mark.parametrize("raw", ["[]", "not json", 42, ["alice"]])
def test_voiceprints_must_be_an_object(raw):
    with pytest.raises(InvalidVoiceprintError):
        parse_known_speakers(raw)


def test_a_voiceprint_of_another_embedding_model_is_refused():
    known = parse_known_speakers({"alice": voiceprint(VOICES["alice"], model="cd" * 32).to_dict()})
    with pytest.raises(VoiceprintModelMismatchError):
        check_model(known, MODEL)
    check_model(parse_known_speakers({"alice": voiceprint(VOICES["alice"]).to_dict()}), MODEL)


def test_voiceprints_are_read_alike_as_text_and_as_json():
    document = {"alice": voiceprint(VOICES["alice"]).to_dict()}
    assert parse_options({"voiceprints": json.dumps(document)}) == parse_options({"voiceprints": document})


def test_enrolled_voices_are_named_and_a_stranger_is_not():
    centroids = {"SPEAKER_00": near(VOICES["alice"]), "SPEAKER_01": near(VOICES["bob"]), "SPEAKER_02": VOICES["dave"]}
    known = parse_known_speakers({name: voiceprint(VOICES[name]).to_dict() for name in ("alice", "bob", "carol")})
    named = identify(result(centroids), known)
    assert [t.speaker for t in named.turns] == ["alice", "bob", "SPEAKER_02"]
    assert set(named.identified) == {"alice", "bob"}
    assert named.identified["alice"][0] == "SPEAKER_00" and named.identified["alice"][1] >= MATCH_THRESHOLD
    assert set(named.centroids) == {"alice", "bob", "SPEAKER_02"}
    assert named.num_speakers == 3


def test_an_over_split_speaker_does_not_take_the_same_name_twice():
    centroids = {"SPEAKER_00": near(VOICES["alice"], 0.2), "SPEAKER_01": near(VOICES["alice"], 0.4)}
    named = identify(result(centroids), parse_known_speakers({"alice": voiceprint(VOICES["alice"]).to_dict()}))
    assert [t.speaker for t in named.turns] == ["alice", "SPEAKER_01"]


def test_a_voice_between_two_enrolled_voices_is_not_named():
    between = (VOICES["alice"] / np.linalg.norm(VOICES["alice"]) + VOICES["bob"] / np.linalg.norm(VOICES["bob"])) / 2
    known = parse_known_speakers({name: voiceprint(VOICES[name]).to_dict() for name in ("alice", "bob")})
    named = identify(result({"SPEAKER_00": between}), known)
    similarities = sorted(
        float(between @ VOICES[n] / np.linalg.norm(between) / np.linalg.norm(VOICES[n])) for n in ("alice", "bob")
    )
    assert similarities[1] - similarities[0] < MATCH_MARGIN  # the case is what it claims
    assert named.turns[0].speaker == "SPEAKER_00" and not named.identified


def test_enrolment_takes_the_dominant_speaker():
    clip = result({"SPEAKER_00": VOICES["alice"], "SPEAKER_01": VOICES["bob"]}, {"SPEAKER_00": 9.0, "SPEAKER_01": 1.0})
    made = make_voiceprint(clip, MODEL, "offline-default")
    assert made.speech_seconds == 9.0 and made.embedding_model == MODEL
    assert np.allclose(made.embedding, VOICES["alice"], atol=1e-5)


def test_enrolment_refuses_too_little_speech_and_a_dialogue():
    with pytest.raises(VoiceprintTooShortError):
        make_voiceprint(result({"SPEAKER_00": VOICES["alice"]}, {"SPEAKER_00": 2.5}), MODEL)
    with pytest.raises(VoiceprintTooShortError):
        make_voiceprint(EngineResult((), (), 0, 10.0, 1.0), MODEL)
    dialogue = result(
        {"SPEAKER_00": VOICES["alice"], "SPEAKER_01": VOICES["bob"]}, {"SPEAKER_00": 6.0, "SPEAKER_01": 4.0}
    )
    with pytest.raises(VoiceprintSpeakersError):
        make_voiceprint(dialogue, MODEL)

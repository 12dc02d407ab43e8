"""Transcripts and voiceprints through the event door: objects named in an event's options.

A real consumer on the real broker and MinIO: the event names the audio, a transcript
object and a voiceprints object; the completed event and the stored result carry the
transcript with a speaker on every word and the enrolled voices by name (the ``spoken`` and
``voiceprints`` fixtures: tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import uuid

import pytest

import schemas
from tests.support.conversation import VOICES
from tests.support.spoken_words import verbose_json
from tests.support.stack import cloudevent_headers, results_for

pytestmark = pytest.mark.integration


def send(stack, topic: str, event_id: str, data: dict) -> None:
    stack.produce(topic, json.dumps(data).encode(), data["key"].encode(), cloudevent_headers(event_id))


def test_an_event_naming_a_transcript_and_voiceprints_gets_both_back(
    stack, start_consumer, reader, spoken, voiceprints
):
    wav, sentences = spoken
    topics = stack.topics("named")
    consumer = start_consumer(topics)
    prefix = f"it/{uuid.uuid4().hex[:8]}"
    audio_key, transcript_key, prints_key = f"{prefix}/meeting.wav", f"{prefix}/meeting.json", f"{prefix}/voices.json"
    stack.upload(audio_key, wav.read_bytes())
    stack.upload(transcript_key, json.dumps(verbose_json(sentences)).encode())
    stack.upload(prints_key, json.dumps(voiceprints).encode())
    options = {
        "transcript_object": {"bucket": "audio", "key": transcript_key},
        "voiceprints_object": {"bucket": "audio", "key": prints_key},
        "return_embeddings": True,
    }
    topic = topics["KAFKA_INPUT_TOPIC"]
    send(stack, topic, "named-1", {"bucket": "audio", "key": audio_key, "options": options})
    send(stack, topic, "named-2", {"bucket": "audio", "key": audio_key, "options": options})  # the same again
    # inline voiceprints, and a transcript nobody uploaded
    inline = {
        "voiceprints": {"ada": voiceprints["ada"]},
        "transcript_object": {"bucket": "audio", "key": f"{prefix}/no"},
    }
    send(stack, topic, "named-3", {"bucket": "audio", "key": audio_key, "options": inline})
    stranger = {**voiceprints["ada"], "embedding_model": "0" * 64}
    send(stack, topic, "named-4", {"bucket": "audio", "key": audio_key, "options": {"voiceprints": {"ada": stranger}}})
    outside = {"transcript_object": {"bucket": "diarization-results", "key": "anything.json"}}
    send(stack, topic, "named-5", {"bucket": "audio", "key": audio_key, "options": outside})

    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    ids = [f"named-{i}" for i in range(1, 6)]
    events = results.wait_for(lambda ev: all(results_for(ev, i) for i in ids), 300, "five results")
    [first], [second], [missing], [mismatch], [forbidden] = (results_for(events, i) for i in ids)

    assert first.type == "dev.diarization.job.completed", first.data
    schemas.validator("job-completed").validate(first.data)
    document = first.data
    words = document["transcript"]["words"]
    assert [w["word"] for w in words] == [w.text for s in sentences for w in s.words]
    assert all(w["speaker"] for w in words)
    assert set(document["identified"]) == {"ada", "grace"}
    # the transcript's segments are its sentences: each named speaker's are the enrolled voice's
    spoken_by: dict[str, set[str]] = {}
    for segment, sentence in zip(document["transcript"]["segments"], sentences, strict=True):
        assert segment["text"] == sentence.text
        spoken_by.setdefault(segment["speaker"], set()).add(sentence.words[0].speaker)
    assert spoken_by.get("ada") == {VOICES[0]} and spoken_by.get("grace") == {VOICES[1]}
    assert set(document["embeddings"]["speakers"]) == {s["speaker"] for s in document["segments"]}
    assert document["options"]["transcript_object"] == options["transcript_object"]
    stages = document["stage_seconds"]
    assert set(stages) == {"decode", "segmentation", "embeddings", "clustering", "confidence"}
    assert all(stages[s] > 0 for s in ("segmentation", "embeddings", "confidence")), stages
    stored = json.loads(stack.minio().get_object("diarization-results", document["results"]["json"]).read())
    assert stored["transcript"] == document["transcript"] and stored["identified"] == document["identified"]
    # the same objects: answered from the stored result
    assert second.data["reused"] and second.data["transcript"] == document["transcript"]

    failures = {e.id: (e.type, e.data["error"]["code"]) for e in (missing, mismatch, forbidden)}
    assert failures == {
        missing.id: ("dev.diarization.job.failed", "object_not_found"),
        mismatch.id: ("dev.diarization.job.failed", "voiceprint_model_mismatch"),
        forbidden.id: ("dev.diarization.job.failed", "access_denied"),
    }
    assert consumer.metric('diarization_jobs_total{outcome="reused",task="event"}') == 1


def test_a_changed_transcript_object_is_a_new_job(stack, start_consumer, reader, spoken):
    wav, sentences = spoken
    topics = stack.topics("named-change")
    start_consumer(topics)
    prefix = f"it/{uuid.uuid4().hex[:8]}"
    audio_key, transcript_key = f"{prefix}/meeting.wav", f"{prefix}/meeting.json"
    stack.upload(audio_key, wav.read_bytes())
    options = {"transcript_object": {"bucket": "audio", "key": transcript_key}}
    topic = topics["KAFKA_INPUT_TOPIC"]
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    stack.upload(transcript_key, json.dumps(verbose_json(sentences)).encode())
    send(stack, topic, "change-1", {"bucket": "audio", "key": audio_key, "options": options})
    results.wait_for(lambda ev: results_for(ev, "change-1"), 300, "the first result")
    shorter = verbose_json(sentences[:3])
    stack.upload(transcript_key, json.dumps(shorter).encode())
    send(stack, topic, "change-2", {"bucket": "audio", "key": audio_key, "options": options})
    events = results.wait_for(lambda ev: results_for(ev, "change-2"), 300, "the second result")
    [first], [second] = results_for(events, "change-1"), results_for(events, "change-2")
    assert not second.data["reused"]
    assert len(second.data["transcript"]["words"]) == sum(len(s.words) for s in sentences[:3])
    assert len(first.data["transcript"]["words"]) == sum(len(s.words) for s in sentences)
    assert first.data["results"]["json"] != second.data["results"]["json"]

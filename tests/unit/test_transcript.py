"""Transcripts: reading every format, attributing speakers, writing them out, refusing bad ones."""

from __future__ import annotations

import json
import random

import pytest

from consumer.engine import SpeakerTurn
from consumer.errors import InvalidTranscriptError, TranscriptMismatchError
from consumer.transcript import (
    SpeakerTimeline,
    Transcript,
    attribute,
    check_fits,
    parse,
    to_diarized_json,
    to_json,
    to_srt,
    to_vtt,
)

TURNS = (
    SpeakerTurn(0.0, 4.0, "SPEAKER_00"),
    SpeakerTurn(4.5, 9.0, "SPEAKER_01"),
    SpeakerTurn(10.0, 12.0, "SPEAKER_00"),
)

OPENAI_VERBOSE = {
    "task": "transcribe",
    "language": "english",
    "duration": 12.0,
    "text": "Hello there. General Kenobi. Indeed.",
    "segments": [
        {"id": 0, "start": 0.2, "end": 3.8, "text": " Hello there."},
        {"id": 1, "start": 4.6, "end": 8.7, "text": " General Kenobi."},
        {"id": 2, "start": 10.1, "end": 11.9, "text": " Indeed."},
    ],
    "words": [
        {"word": "Hello", "start": 0.2, "end": 1.0},
        {"word": "there", "start": 1.1, "end": 3.8},
        {"word": "General", "start": 4.6, "end": 6.0},
        {"word": "Kenobi", "start": 6.1, "end": 8.7},
        {"word": "Indeed", "start": 10.1, "end": 11.9},
    ],
}

WHISPERX = {
    "segments": [
        {
            "start": 0.2,
            "end": 8.7,
            "text": "Hello there general Kenobi",
            "words": [
                {"word": "Hello", "start": 0.2, "end": 1.0, "score": 0.9},
                {"word": "there", "start": 1.1, "end": 3.8, "score": 0.8},
                {"word": "general", "start": 4.6, "end": 6.0, "score": 0.9},
                {"word": "Kenobi", "start": 6.1, "end": 8.7, "score": 0.7},
            ],
        }
    ],
    "word_segments": [],
}

SRT = """1
00:00:00,200 --> 00:00:03,800
Hello there.

2
00:00:04,600 --> 00:00:08,700
General
Kenobi.

3
00:00:10,100 --> 00:00:11,900
Indeed.
"""

VTT = """WEBVTT - a meeting

NOTE written by hand

intro
00:00.200 --> 00:03.800 align:start
<v Someone>Hello there.</v>

00:00:04.600 --> 00:00:08.700
General Kenobi.

00:10.100 --> 00:11.900
Indeed &amp; so.
"""


def speakers(transcript: Transcript) -> list[str]:
    return [s.speaker for s in transcript.segments]


@pytest.mark.parametrize("source", [json.dumps(OPENAI_VERBOSE), SRT, VTT, "\ufeff" + SRT.replace("\n", "\r\n")])
def test_every_format_gets_the_speakers_of_its_segments(source: str) -> None:
    attributed = attribute(parse(source.encode()), TURNS)
    assert speakers(attributed) == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert [s.start for s in attributed.segments] == [0.2, 4.6, 10.1]


def test_openai_words_are_placed_in_their_segments_and_attributed() -> None:
    attributed = attribute(parse(json.dumps(OPENAI_VERBOSE).encode()), TURNS)
    assert [[w.text for w in s.words] for s in attributed.segments] == [
        ["Hello", "there"],
        ["General", "Kenobi"],
        ["Indeed"],
    ]
    assert [w["speaker"] for w in to_json(attributed)["words"]] == [
        "SPEAKER_00",
        "SPEAKER_00",
        "SPEAKER_01",
        "SPEAKER_01",
        "SPEAKER_00",
    ]


def test_a_segment_spanning_two_speakers_takes_the_speaker_of_most_of_its_words() -> None:
    attributed = attribute(parse(json.dumps(WHISPERX).encode()), TURNS)
    (segment,) = attributed.segments
    assert [w.speaker for w in segment.words] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01", "SPEAKER_01"]
    # the words say 0.8 + 2.7 s for SPEAKER_00 and 1.4 + 2.6 s for SPEAKER_01
    assert segment.speaker == "SPEAKER_01"


def test_words_only_transcripts_are_regrouped_by_speaker() -> None:
    words_only = {"text": "x", "words": OPENAI_VERBOSE["words"]}
    attributed = attribute(parse(json.dumps(words_only).encode()), TURNS)
    assert [(s.speaker, s.text) for s in attributed.segments] == [
        ("SPEAKER_00", "Hello there"),
        ("SPEAKER_01", "General Kenobi"),
        ("SPEAKER_00", "Indeed"),
    ]


def test_a_word_in_a_pause_gets_the_nearest_turn() -> None:
    timeline = SpeakerTimeline(TURNS)
    assert timeline.speaker(4.1, 4.2) == "SPEAKER_00"  # 0.1 s after turn 1, 0.3 s before turn 2
    assert timeline.speaker(4.3, 4.45) == "SPEAKER_01"
    assert timeline.speaker(9.2, 9.3) == "SPEAKER_01"
    assert timeline.speaker(20.0, 21.0) == "SPEAKER_00"  # after the last turn
    assert timeline.speaker(5.0, 5.0) == "SPEAKER_01"  # zero length, inside a turn
    assert SpeakerTimeline(()).speaker(1.0, 2.0) == "UNKNOWN"


def brute_force(turns: list[SpeakerTurn], start: float, end: float) -> str:
    end = max(end, start + 1e-3)
    overlap: dict[str, float] = {}
    for t in turns:
        shared = min(end, t.end) - max(start, t.start)
        if shared > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + shared
    if overlap:
        return max(sorted(overlap.items()), key=lambda item: item[1])[0]
    # nearest by gap; a tie goes to the turn before, and among those to the last in time order
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    gaps = [(max(start - t.end, t.start - end), t) for t in ordered]
    best = min(g for g, _ in gaps)
    before = [t for g, t in gaps if g == best and t.end <= start]
    return before[-1].speaker if before else next(t for g, t in gaps if g == best).speaker


@pytest.mark.parametrize("exclusive", [True, False])
def test_the_lookup_agrees_with_a_brute_force_scan(exclusive: bool) -> None:
    rng = random.Random(7)
    for _ in range(200):
        turns, t = [], 0.0
        for _ in range(rng.randint(1, 12)):
            t += rng.uniform(0.0, 3.0)
            length = rng.uniform(0.1, 4.0)
            turns.append(SpeakerTurn(round(t, 2), round(t + length, 2), f"S{rng.randint(0, 3)}"))
            if exclusive:
                t += length
        timeline = SpeakerTimeline(turns)
        for _ in range(20):
            start = round(rng.uniform(0.0, t + 5.0), 2)
            end = round(start + rng.choice([0.0, rng.uniform(0.0, 3.0)]), 2)
            assert timeline.speaker(start, end) == brute_force(turns, start, end), (turns, start, end)


def test_the_outputs_carry_the_speakers() -> None:
    attributed = attribute(parse(SRT.encode()), TURNS)
    diarized = to_diarized_json(attributed, duration=12.0)
    assert diarized["task"] == "transcribe" and diarized["duration"] == 12.0
    assert [(s["id"], s["speaker"], s["text"]) for s in diarized["segments"]] == [
        ("seg_0", "SPEAKER_00", "Hello there."),
        ("seg_1", "SPEAKER_01", "General Kenobi."),
        ("seg_2", "SPEAKER_00", "Indeed."),
    ]
    srt = to_srt(attributed)
    assert "2\n00:00:04,600 --> 00:00:08,700\nSPEAKER_01: General Kenobi.\n" in srt
    vtt = to_vtt(attributed)
    assert vtt.startswith("WEBVTT\n\n") and "00:00:10.100 --> 00:00:11.900\n<v SPEAKER_00>Indeed.\n" in vtt
    # what we write, we read back with the same times
    for written in (srt, vtt):
        assert [(s.start, s.end) for s in parse(written.encode()).segments] == [(0.2, 3.8), (4.6, 8.7), (10.1, 11.9)]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"just some words", "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'{"segments": [{"start": 1}]', "not valid JSON"),
        (b'{"text": "hello"}', "needs 'segments' or 'words'"),
        (b"[1, 2]", "must be an object"),
        (b'{"segments": {"start": 1}}', "must be a list"),
        (b'{"segments": [{"start": 2, "end": 1, "text": "x"}]}', "ends before it starts"),
        (b'{"segments": [{"start": -1, "end": 1, "text": "x"}]}', ">= 0"),
        (b'{"segments": [{"start": NaN, "end": 1, "text": "x"}]}', "not valid JSON"),
        (b'{"segments": [{"start": true, "end": 1, "text": "x"}]}', ">= 0"),
        (b'{"segments": [{"start": 0, "end": 1, "text": 5}]}', "must be a string"),
        (b'{"segments": []}', "no timed segments"),
        (b'{"segments": [{"start": 5, "end": 6, "text": "b"}, {"start": 1, "end": 2, "text": "a"}]}', "before the one"),
        (
            b'{"segments": [{"start": 0, "end": 6, "text": "b", "words": '
            b'[{"word": "x", "start": 3, "end": 4}, {"word": "y", "start": 1, "end": 2}]}]}',
            "before the word before",
        ),
        (b"1\n00:00:01,000 --> 00:00:00,500\nx\n", "ends before it starts"),
        (b"1\n00:00:01,000 --> soon\nx\n", "cannot read the timing line"),
        (b"1\n00:00:99,000 --> 00:01:40,000\nx\n", "not a clock time"),
        (b"WEBVTT\n\nNOTE nothing timed here\n", "no timed segments"),
    ],
)
def test_bad_transcripts_are_refused_with_a_reason(source: bytes, message: str) -> None:
    with pytest.raises(InvalidTranscriptError, match=message) as raised:
        parse(source)
    assert raised.value.code == "invalid_transcript" and raised.value.http_status == 400


def test_a_transcript_longer_than_the_audio_is_refused() -> None:
    transcript = parse(SRT.encode())  # ends at 11.9 s
    check_fits(transcript, duration=11.0)  # within the rounding tolerance
    with pytest.raises(TranscriptMismatchError, match="ends at 11.90 s but the audio lasts 10.00 s") as raised:
        check_fits(transcript, duration=10.0)
    assert raised.value.code == "transcript_mismatch" and raised.value.http_status == 422

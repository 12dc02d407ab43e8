"""Transcripts with speakers: read a transcript, give each word and segment a speaker, write it out.

Read: OpenAI ``verbose_json`` (``segments`` and/or top-level ``words``), WhisperX JSON
(``segments`` with ``words``, or ``word_segments``), SRT and WebVTT, told apart by content.
Attribute: each word and segment gets the speaker whose turns overlap it most; an item
that overlaps no turn (a word in a pause) gets the nearest turn's speaker. The turns are
sorted once and each item is placed with a binary search, so a four-hour transcript
(tens of thousands of words against thousands of turns) attributes in well under a second.
Write: the transcript as JSON with speakers, OpenAI's ``diarized_json``, SRT and WebVTT.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from consumer.engine import SpeakerTurn
from consumer.errors import InvalidTranscriptError, TranscriptMismatchError

MAX_TRANSCRIPT_BYTES = 32 * 1024 * 1024
"""Above a verbose transcript of the longest audio the service takes (about 5 MB per 4 hours: 30 MB a day)."""

DURATION_TOLERANCE = 1.0
"""Seconds a transcript may run past the audio: transcribers round the last timestamp up."""

NO_SPEAKER = "UNKNOWN"
"""The speaker of items in a result with no speech at all."""


@dataclass(frozen=True, slots=True)
class Word:
    """One timed word; ``speaker`` is empty until attributed."""

    start: float
    end: float
    text: str
    speaker: str = ""


@dataclass(frozen=True, slots=True)
class Segment:
    """One timed stretch of text with the words in it (possibly none)."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    speaker: str = ""


@dataclass(frozen=True, slots=True)
class Transcript:
    """A transcript as segments; ``words_only`` when the source had words but no segments."""

    segments: tuple[Segment, ...]
    words_only: bool = False

    @property
    def end(self) -> float:
        return max((s.end for s in self.segments), default=0.0)

    @property
    def word_count(self) -> int:
        return sum(len(s.words) for s in self.segments)


# --- reading ---------------------------------------------------------------------------


def parse(data: bytes) -> Transcript:
    """The transcript in ``data``; ``InvalidTranscriptError`` when it is none of the formats."""
    if len(data) > MAX_TRANSCRIPT_BYTES:
        raise InvalidTranscriptError(f"the transcript is larger than {MAX_TRANSCRIPT_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidTranscriptError(f"the transcript is not UTF-8 text: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        transcript = _from_json(text)
    elif stripped.startswith("WEBVTT"):
        transcript = _from_cues(stripped, vtt=True)
    elif "-->" in stripped:
        transcript = _from_cues(stripped, vtt=False)
    else:
        raise InvalidTranscriptError("the transcript is not JSON (OpenAI verbose_json, WhisperX), SRT or WebVTT")
    if not transcript.segments:
        raise InvalidTranscriptError("the transcript has no timed segments or words")
    _check_order(transcript)
    return transcript


def _from_json(text: str) -> Transcript:
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidTranscriptError(f"the transcript is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidTranscriptError("a JSON transcript must be an object with 'segments' or 'words'")
    raw_segments = document.get("segments")
    # OpenAI puts word timestamps beside the segments; WhisperX adds 'word_segments'.
    raw_words = document.get("words", document.get("word_segments"))
    if raw_segments is None and raw_words is None:
        raise InvalidTranscriptError("a JSON transcript needs 'segments' or 'words'")
    loose = tuple(_word(w, f"words[{i}]") for i, w in enumerate(_list(raw_words, "words")))
    if raw_segments is None:
        return Transcript(tuple(Segment(w.start, w.end, w.text, (w,)) for w in loose), words_only=True)
    segments = []
    for i, raw in enumerate(_list(raw_segments, "segments")):
        where = f"segments[{i}]"
        if not isinstance(raw, dict):
            raise InvalidTranscriptError(f"{where} must be an object")
        start, end = _times(raw, where)
        inner = tuple(_word(w, f"{where}.words[{j}]") for j, w in enumerate(_list(raw.get("words"), f"{where}.words")))
        segments.append(Segment(start, end, _text(raw.get("text", ""), where), inner))
    if loose and not any(s.words for s in segments):
        segments = _place_words(segments, loose)
    return Transcript(tuple(segments))


def _place_words(segments: list[Segment], words: Sequence[Word]) -> list[Segment]:
    """Give each segment the loose words whose middle falls in it (OpenAI's separate lists)."""
    starts = [s.start for s in segments]
    grouped: list[list[Word]] = [[] for _ in segments]
    for word in words:
        middle = (word.start + word.end) / 2
        index = max(bisect.bisect_right(starts, middle) - 1, 0)
        grouped[index].append(word)
    return [replace(s, words=tuple(g)) for s, g in zip(segments, grouped, strict=True)]


_CUE_TIME = re.compile(
    r"^\s*(?P<start>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*(?P<end>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})(?:\s.*)?$"
)
_VOICE_TAG = re.compile(r"<[^>]*>")


def _from_cues(text: str, vtt: bool) -> Transcript:
    segments = []
    for number, block in enumerate(re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))):
        lines = [line for line in block.split("\n") if line.strip()]
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue  # WEBVTT header, NOTE, STYLE and REGION blocks
        match = _CUE_TIME.match(lines[timing])
        if match is None:
            raise InvalidTranscriptError(f"cue {number}: cannot read the timing line {lines[timing][:80]!r}")
        start, end = _clock(match["start"]), _clock(match["end"])
        if end < start:
            raise InvalidTranscriptError(f"cue {number} ends before it starts")
        words = " ".join(lines[timing + 1 :])
        segments.append(Segment(start, end, _VOICE_TAG.sub("", words).strip() if vtt else words.strip()))
    return Transcript(tuple(segments))


def _clock(value: str) -> float:
    parts = value.replace(",", ".").split(":")
    seconds = float(parts[-1])
    minutes = int(parts[-2])
    hours = int(parts[-3]) if len(parts) == 3 else 0
    if seconds >= 60 or minutes >= 60:
        raise InvalidTranscriptError(f"not a clock time: {value!r}")
    return hours * 3600 + minutes * 60 + seconds


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidTranscriptError(f"{where} must be a list")
    return value


def _word(raw: object, where: str) -> Word:
    if not isinstance(raw, dict):
        raise InvalidTranscriptError(f"{where} must be an object")
    start, end = _times(raw, where)
    return Word(start, end, _text(raw.get("word", raw.get("text", "")), where))


def _times(raw: dict[str, Any], where: str) -> tuple[float, float]:
    start, end = raw.get("start"), raw.get("end")
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise InvalidTranscriptError(f"{where}.{name} must be a number of seconds >= 0, got {value!r}")
    assert isinstance(start, int | float) and isinstance(end, int | float)
    if end < start:
        raise InvalidTranscriptError(f"{where} ends before it starts ({start} > {end})")
    return float(start), float(end)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidTranscriptError(f"{where}: the text must be a string")
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _check_order(transcript: Transcript) -> None:
    """Segments, and the words in each, must start in time order (transcribers write them so)."""
    previous = -1.0
    for i, segment in enumerate(transcript.segments):
        if segment.start < previous:
            raise InvalidTranscriptError(f"segment {i} starts at {segment.start} s, before the one before it")
        previous = segment.start
        last_word = -1.0
        for j, word in enumerate(segment.words):
            if word.start < last_word:
                raise InvalidTranscriptError(f"segment {i}, word {j} starts before the word before it")
            last_word = word.start


def check_fits(transcript: Transcript, duration: float) -> None:
    """``TranscriptMismatchError`` when the transcript runs past the audio (beyond rounding)."""
    if transcript.end > duration + DURATION_TOLERANCE:
        raise TranscriptMismatchError(
            f"the transcript ends at {transcript.end:.2f} s but the audio lasts {duration:.2f} s: "
            "is it the transcript of this recording?"
        )


# --- attributing -----------------------------------------------------------------------


class SpeakerTimeline:
    """Speaker turns sorted for lookups: who overlaps an interval most, or is nearest to it."""

    def __init__(self, turns: Iterable[SpeakerTurn]) -> None:
        self._turns = sorted(turns, key=lambda t: (t.start, t.end))
        self._starts = [t.start for t in self._turns]
        # reach[i]: the latest end among turns[0..i]; lets a lookup stop scanning backwards
        # as soon as no earlier turn can reach the interval, overlapping turns included.
        self._reach: list[float] = []
        latest = -math.inf
        for turn in self._turns:
            latest = max(latest, turn.end)
            self._reach.append(latest)

    def speaker(self, start: float, end: float) -> str:
        """The speaker overlapping ``[start, end]`` most; the nearest turn's when none does."""
        if not self._turns:
            return NO_SPEAKER
        end = max(end, start + 1e-3)  # a zero-length word still lies inside a turn
        overlap: dict[str, float] = {}
        i = bisect.bisect_left(self._starts, end) - 1
        while i >= 0 and self._reach[i] > start:
            turn = self._turns[i]
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
            i -= 1
        if overlap:
            # ties go to the first name in order, so the answer never depends on turn order
            return max(sorted(overlap.items()), key=lambda item: item[1])[0]
        return self._nearest(start, end)

    def _nearest(self, start: float, end: float) -> str:
        i = bisect.bisect_left(self._starts, end)
        after = self._turns[i] if i < len(self._turns) else None
        # the turn ending last before the interval: reach[i-1] is that end; with exclusive
        # turns it is turns[i-1] itself, so the scan back is one step
        before = None
        if i > 0:
            j = i - 1
            while self._turns[j].end < self._reach[i - 1]:
                j -= 1
            before = self._turns[j]
        gap_before = start - before.end if before else math.inf
        gap_after = after.start - end if after else math.inf
        chosen = before if gap_before <= gap_after else after
        assert chosen is not None
        return chosen.speaker


def attribute(transcript: Transcript, turns: Iterable[SpeakerTurn]) -> Transcript:
    """The transcript with a speaker on every segment and word.

    Words get the speaker that overlaps them most. A segment with words gets the speaker
    who says most of its words' time (so a segment is never given a speaker none of its
    words has); a segment without words is attributed by its own interval. A transcript
    that had only words is regrouped into one segment per run of words by one speaker.
    """
    timeline = SpeakerTimeline(turns)
    segments = []
    for segment in transcript.segments:
        words = tuple(replace(w, speaker=timeline.speaker(w.start, w.end)) for w in segment.words)
        segments.append(replace(segment, words=words, speaker=_segment_speaker(segment, words, timeline)))
    if transcript.words_only:
        segments = _regroup(w for s in segments for w in s.words)
    return Transcript(tuple(segments), transcript.words_only)


def _segment_speaker(segment: Segment, words: Sequence[Word], timeline: SpeakerTimeline) -> str:
    if not words:
        return timeline.speaker(segment.start, segment.end)
    spoken: dict[str, float] = {}
    for word in words:
        # a zero-length word still counts, a little
        spoken[word.speaker] = spoken.get(word.speaker, 0.0) + max(word.end - word.start, 1e-3)
    return max(spoken.items(), key=lambda item: item[1])[0]


def _regroup(words: Iterable[Word]) -> list[Segment]:
    segments: list[Segment] = []
    run: list[Word] = []
    for word in words:
        if run and word.speaker != run[-1].speaker:
            segments.append(_run_segment(run))
            run = []
        run.append(word)
    if run:
        segments.append(_run_segment(run))
    return segments


def _run_segment(run: list[Word]) -> Segment:
    text = " ".join(w.text.strip() for w in run if w.text.strip())
    return Segment(run[0].start, max(w.end for w in run), text, tuple(run), run[0].speaker)


# --- writing ---------------------------------------------------------------------------


def to_json(transcript: Transcript) -> dict[str, Any]:
    """The attributed transcript as ``{"segments": [...], "words": [...]}`` with speakers."""
    return {
        "segments": [
            {"start": _round(s.start), "end": _round(s.end), "speaker": s.speaker, "text": s.text.strip()}
            for s in transcript.segments
        ],
        "words": [
            {"start": _round(w.start), "end": _round(w.end), "speaker": w.speaker, "word": w.text.strip()}
            for s in transcript.segments
            for w in s.words
        ],
    }


def from_stored(document: dict[str, Any]) -> Transcript:
    """The attributed transcript back from ``to_json``'s document (a stored result's ``transcript``):
    its segments with speakers and text, as ``to_srt``, ``to_vtt`` and ``to_diarized_json`` read them."""
    return Transcript(
        tuple(
            Segment(float(s["start"]), float(s["end"]), str(s.get("text", "")), (), str(s.get("speaker", "")))
            for s in document.get("segments", [])
        )
    )


def to_diarized_json(transcript: Transcript, duration: float) -> dict[str, Any]:
    """OpenAI's ``diarized_json`` shape: ``task``, ``duration``, ``text``, ``segments`` with speakers."""
    return {
        "task": "transcribe",
        "duration": _round(duration),
        "text": " ".join(s.text.strip() for s in transcript.segments if s.text.strip()),
        "segments": [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{i}",
                "start": _round(s.start),
                "end": _round(s.end),
                "speaker": s.speaker,
                "text": s.text.strip(),
            }
            for i, s in enumerate(transcript.segments)
        ],
    }


def to_srt(transcript: Transcript) -> str:
    """SubRip cues, each text prefixed with its speaker (``SPEAKER_00: ...``; the speaker alone without text)."""
    return "".join(
        f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{_labelled(s)}\n\n"
        for i, s in enumerate(transcript.segments, start=1)
    )


def _labelled(segment: Segment) -> str:
    text = segment.text.strip()
    return f"{segment.speaker}: {text}" if text else segment.speaker


def to_vtt(transcript: Transcript) -> str:
    """WebVTT cues with the speaker as a voice span (``<v SPEAKER_00>...``), as WebVTT defines it."""
    cues = "".join(
        f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n<v {s.speaker}>{_vtt_escape(s.text.strip())}\n\n"
        for s in transcript.segments
    )
    return f"WEBVTT\n\n{cues}"


def _stamp(seconds: float, decimal: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _round(value: float) -> float:
    return round(value, 3)


def from_turns(turns: Iterable[SpeakerTurn]) -> Transcript:
    """The speaker turns themselves as an attributed transcript without text (no transcript given)."""
    return Transcript(tuple(Segment(t.start, t.end, "", (), t.speaker) for t in sorted(turns, key=lambda t: t.start)))

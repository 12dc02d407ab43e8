"""A hostile-input corpus, generated at test time, through all three doors of the service.

``CORPUS`` below is the whole table: one row per input, with what it must get at each
door it applies to. The doors are real processes on the real local stack, one of each for
the module: a gunicorn shim (``POST /v1/diarize`` and the Knative receiver ``POST /`` in
reply mode) and a ``diarization consumer`` on a per-module single-partition input topic.

After its corpus, each door must still be whole: the process alive and the same (no
crash, no restarted gunicorn worker), ``/health`` 200, every input answered within a
bound, and a valid input sent last completes. On the Kafka door also: exactly one result
event per input (none for an ignored one) with the expected code, the inputs that are no
event at all also in the dead-letter topic, and the group's committed offset past every
input. Three hours of silence go through the Kafka door once, with the consumer's peak
RSS bounded.

Each door test checks every row before it fails, and prints one line per input (``-s``
or ``-rP`` shows them): a failure lists every input that got something else.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support import media
from tests.support.hostile import (
    Message,
    RawAnswer,
    binary_event,
    children,
    chunked,
    claims_more_than_present,
    clipped,
    huge_declared_size,
    kafka_source_wrapped,
    long_silent_flac,
    mp3,
    multipart_file_head,
    noise,
    non_finite,
    notification,
    peak_rss_bytes,
    png,
    raw,
    raw_exchange,
    read_raw,
    request_head,
    silence,
    structured_event,
    text,
    wav,
    with_magic,
    with_wave_tag,
    write_silent_wav,
    zip_of_wav,
)
from tests.support.processes import ConsumerProcess, free_port, shim_env, start_module, stop, wait_http
from tests.support.stack import Stack, TopicReader

pytestmark = pytest.mark.integration

# --- the doors' settings and the bounds ----------------------------------------------------------

API_KEY = "hostile-k3y"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SENDER_TOKEN = "hostile-s3nder"  # the receiver checks its senders (a shared token here)
SENDER = {"Authorization": f"Bearer {SENDER_TOKEN}"}
MAX_AUDIO_BYTES = 16 * 1024 * 1024  # the shim's upload limit (the consumer keeps the default 512 MiB)
EVENT_MAX_BYTES = 64 * 1024  # the receiver's event limit
KAFKA_MAX_MESSAGE_BYTES = 64 * 1024  # the consumer's input message limit
HTTP_THREADS = 5  # the slow-client test holds this many connections open
REQUEST_TIMEOUT_SECONDS = 30  # the shim's worker timeout
BODY_READ_TIMEOUT_SECONDS = 10  # the shim's limit on one stalled body read
SLOW_CLIENT_BOUND_S = 3 * REQUEST_TIMEOUT_SECONDS  # a slow client must be cut off (408 or close) by then
REJECT_BOUND_S = 60.0  # a refused input is answered within this (2 shared cores)
JOB_BOUND_S = 600.0  # a model job on short audio is answered within this
KAFKA_CORPUS_BOUND_S = 1200.0  # the whole Kafka corpus, model jobs included
KAFKA_STALL_S = 300.0  # no result event for this long: the consumer is stuck on an input
SILENCE_3H_BOUND_S = 3600.0  # three hours of silence on a shared 2-core CPU
PEAK_RSS_LIMIT = int(3.0 * 1024**3)  # the consumer's VmHWM after three hours of silence (measured 2.07 GiB)
BUCKET = "audio"
RUN = uuid.uuid4().hex[:8]

# --- expected outcomes -------------------------------------------------------------------------

COMPLETED = "completed"  # a completed result (any speech, or none)
SILENT = "completed, no speech"  # completed, with no speaker turn and no speech region
IGNORED = "ignored"  # not a job: Kafka publishes no result, the receiver answers an empty 202
DLQ = "dlq"  # Kafka: the failed event, and the record in the dead-letter topic as well
CUT = "408 or closed"  # a slow client: 408 request_timeout, or the connection closed, within the bound
# the receiver answers a stalled or short event body with a status Knative retries
EVENT_CUT = (503, "incomplete_body")


@dataclass(frozen=True)
class Case:
    """One hostile input and what each door it applies to must answer (``None``: not that door).

    ``http`` and ``knative``: (status, error code or outcome); for the receiver, 200 with
    an error code means a ``…job.failed`` reply event carrying that code. ``kafka``: the
    result event's error code or outcome, or (code, DLQ) when the record must also be
    dead-lettered. Exactly one of ``audio`` (bytes uploaded / posted as ``filename``),
    ``event`` (a message built from the door's key prefix) and ``request`` (a whole HTTP
    exchange with the shim) says how to build it.
    """

    id: str
    what: str
    audio: Callable[[], bytes] | None = None
    filename: str = "audio.wav"
    audio_stream: int = 0  # the option sent with ``audio`` (form field, event options) when not 0
    event: Callable[[str], Message] | None = None
    request: Callable[[Shim], Reply] | None = None
    http: tuple[int, str] | str | None = None
    kafka: str | tuple[str, str] | None = None
    knative: tuple[int, str] | str | None = None
    slow: bool = False  # a slow client: run by test_slow_clients_are_cut_off
    streamed: bool = False  # the 3-hour file: run by test_three_hours_of_silence_through_kafka


Reply = tuple[int | None, str, float]  # status (None: no HTTP answer), error code or outcome, seconds


def _ce(case_id: str, data: object, **attributes: str | bytes) -> Callable[[str], Message]:
    return lambda prefix: binary_event(f"hostile-{case_id}", data, **attributes)


def _obj(case_id: str, key: str, **more: object) -> Callable[[str], Message]:
    """A binary CloudEvent naming ``<prefix>/<key>`` in the upload bucket."""
    return lambda prefix: binary_event(f"hostile-{case_id}", {"bucket": BUCKET, "key": f"{prefix}/{key}", **more})


# The request builders (`_post`, `_raw_*`, `_slow_*`) are defined below the table.
# fmt: off
CORPUS: list[Case] = [
    # --- audio: sent as the multipart file of POST /v1/diarize, and uploaded to the bucket and
    #     named by a binary CloudEvent on the Kafka and Knative doors
    Case("empty-file", "0 bytes", audio=lambda: b"",
         http=(422, "audio_too_short"), kafka="audio_too_short", knative=(200, "audio_too_short")),
    Case("truncated-header", "a WAV cut inside its header (30 bytes)", audio=lambda: wav()[:30],
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("header-only", "a 44-byte WAV header declaring 3 s, no samples", audio=lambda: wav()[:44],
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("claims-more-data", "header declares 10 s, 1 s of samples follow", audio=claims_more_than_present,
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("huge-declared-size", "data chunk declares ~4 GiB, 320 bytes follow", audio=huge_declared_size,
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("zero-frames", "a valid WAV with no samples", audio=lambda: wav(0),
         http=(422, "audio_too_short"), kafka="audio_too_short", knative=(200, "audio_too_short")),
    Case("one-millisecond", "1 ms of audio", audio=lambda: wav(0.001),
         http=(422, "audio_too_short"), kafka="audio_too_short", knative=(200, "audio_too_short")),
    Case("wrong-magic", "a WAV whose RIFF magic is JUNK, named .wav", audio=lambda: with_magic(wav(), b"JUNK"),
         filename="speech.wav", http=(415, "not_audio"), kafka="not_audio", knative=(200, "not_audio")),
    Case("riff-not-wave", "RIFF magic, form type WAVX", audio=lambda: with_wave_tag(wav(), b"WAVX"),
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("mp3", "a real MPEG layer III file, named .wav: decoded as what it is", audio=mp3,
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("zip", "a ZIP archive holding a WAV", audio=zip_of_wav,
         http=(415, "not_audio"), kafka="not_audio", knative=(200, "not_audio")),
    Case("png", "a 1x1 PNG image", audio=png,
         http=(415, "not_audio"), kafka="not_audio", knative=(200, "not_audio")),
    Case("text", "plain text", audio=text,
         http=(415, "not_audio"), kafka="not_audio", knative=(200, "not_audio")),
    Case("nan-samples", "32-bit float WAV with a NaN sample", audio=lambda: non_finite(float("nan"), "FLOAT"),
         http=(422, "non_finite_samples"), kafka="non_finite_samples", knative=(200, "non_finite_samples")),
    Case("inf-samples", "64-bit float WAV with a -inf sample", audio=lambda: non_finite(float("-inf"), "DOUBLE"),
         http=(422, "non_finite_samples"), kafka="non_finite_samples", knative=(200, "non_finite_samples")),
    Case("rate-1hz", "10 s at 1 Hz", audio=lambda: wav(10, rate=1),
         http=(422, "unsupported_sample_rate"), kafka="unsupported_sample_rate", knative=(200, "unsupported_sample_rate")),
    Case("rate-384khz", "1 s at 384 kHz", audio=lambda: wav(1, rate=384_000),
         http=(422, "unsupported_sample_rate"), kafka="unsupported_sample_rate", knative=(200, "unsupported_sample_rate")),
    Case("flac-truncated", "a FLAC cut after 3000 bytes", audio=lambda: wav(fmt="FLAC")[:3000], filename="audio.flac",
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("ogg-garbage", "OggS magic, then zeros", audio=lambda: b"OggS" + bytes(300), filename="audio.ogg",
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("flac-24h01", "24 h 01 min of silence as FLAC (~2 MB)", audio=lambda: long_silent_flac(24 * 3600 + 60),
         filename="audio.flac", http=(422, "audio_too_long"), kafka="audio_too_long", knative=(200, "audio_too_long")),
    Case("channels-32", "3 s, 32 channels (valid)", audio=lambda: wav(channels=32),
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("pcm-u8", "3 s, 8-bit unsigned (valid)", audio=lambda: wav(subtype="PCM_U8"),
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("float64", "3 s, 64-bit float (valid)", audio=lambda: wav(subtype="DOUBLE"),
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("silence-10s", "10 s of digital silence (valid)", audio=lambda: silence(10),
         http=(200, SILENT), kafka=SILENT, knative=(200, SILENT)),
    Case("white-noise", "3 s of white noise (valid)", audio=noise,
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("clipping", "3 s of a tone clipped at full scale (valid)", audio=clipped,
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    # --- compressed audio and video (made with ffmpeg), decoded by FFmpeg through PyAV
    Case("mp3-truncated", "a 4 s MP3 cut in half, mid-frame", audio=lambda: media.truncated(media.speech_tone("mp3", 4.0)),
         filename="audio.mp3", http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("mp3-id3-10mb", "an MP3 behind a 10 MB ID3 tag of random bytes",
         audio=lambda: media.with_garbage_id3(media.speech_tone("mp3")), filename="audio.mp3",
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("adts-noise", "2000 ADTS headers, each followed by random bytes", audio=media.adts_noise, filename="audio.aac",
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("mp4-no-moov", "an M4A without its moov box", audio=lambda: media.without_moov(media.speech_tone("m4a")),
         filename="audio.m4a", http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("mp4-moov-past-end", "an M4A whose mdat claims 100 MB: moov past the end of the file",
         audio=lambda: media.moov_past_the_end(media.speech_tone("m4a")), filename="audio.m4a",
         http=(422, "corrupt_audio"), kafka="corrupt_audio", knative=(200, "corrupt_audio")),
    Case("mp4-video-only", "an H.264 MP4 with no audio track", audio=media.video_only, filename="video.mp4",
         http=(422, "no_audio_stream"), kafka="no_audio_stream", knative=(200, "no_audio_stream")),
    Case("mka-stream-7-of-8", "8 AAC streams, audio_stream 7", audio=media.eight_audio_streams, audio_stream=7,
         filename="tracks.mka", http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("mka-stream-8-of-8", "8 AAC streams, audio_stream 8", audio=media.eight_audio_streams, audio_stream=8,
         filename="tracks.mka", http=(422, "no_audio_stream"), kafka="no_audio_stream", knative=(200, "no_audio_stream")),
    Case("mkv-100k-packets", "Matroska of 100,000 one-sample packets (12.5 s)", audio=media.tiny_packets,
         filename="audio.mkv", http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("opus-claims-10h", "3 s of Ogg Opus whose last page claims 10 h", audio=lambda: media.opus_claiming(hours=10),
         filename="audio.opus", http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("wav-mp4-polyglot", "a valid WAV followed by a whole M4A: read as the WAV", audio=lambda: media.polyglot()[0],
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("zip-named-mp3", "a ZIP holding an MP3, named .mp3", audio=media.zip_of_mp3, filename="audio.mp3",
         http=(415, "not_audio"), kafka="not_audio", knative=(200, "not_audio")),
    Case("mkv-unknown-codec", "Matroska whose audio CodecID FFmpeg does not know", audio=media.unknown_codec,
         filename="audio.mkv", http=(422, "unsupported_codec"), kafka="unsupported_codec", knative=(200, "unsupported_codec")),
    Case("mp4-video-with-audio", "3 s of H.264 + AAC (valid)", audio=media.video_with_audio, filename="meeting.mp4",
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("webm-opus", "3 s of Opus in WebM (valid)", audio=lambda: media.speech_tone("webm"), filename="audio.webm",
         http=(200, COMPLETED), kafka=COMPLETED, knative=(200, COMPLETED)),
    Case("silence-3h", "3 h of silence, 16 kHz 16-bit WAV streamed to disk (330 MiB)", streamed=True,
         kafka=SILENT),

    # --- events: a Kafka record on the consumer's input topic, and POST / on the receiver
    Case("invalid-json", "truncated JSON, no CloudEvent headers", event=lambda p: raw(b'{"bucket": "audio", "key": '),
         kafka=("invalid_event", DLQ), knative=(400, "invalid_event")),
    Case("empty-message", "an empty message", event=lambda p: raw(b"", None),
         kafka=("invalid_event", DLQ), knative=(400, "invalid_event")),
    Case("json-array", "a JSON array, no CloudEvent headers", event=lambda p: raw(b"[1, 2, 3]"),
         kafka=("invalid_event", DLQ), knative=(400, "invalid_event")),
    Case("ce-data-not-json", "binary CloudEvent whose data is not JSON", event=_ce("ce-data-not-json", b"{not json"),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("key-wrong-type", 'data {"bucket": "audio", "key": 42}', event=_ce("key-wrong-type", {"bucket": BUCKET, "key": 42}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("options-wrong-type", 'options {"num_speakers": "2"}',
         event=_obj("options-wrong-type", "a.wav", options={"num_speakers": "2"}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("id-wrong-type", "structured CloudEvent with a numeric id",
         event=lambda p: structured_event(5, {"bucket": BUCKET, "key": f"{p}/a.wav"}),
         kafka=("invalid_event", DLQ), knative=(400, "invalid_event")),
    Case("missing-bucket", "data without bucket", event=_ce("missing-bucket", {"key": "a.wav"}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("missing-key", "data without key", event=_ce("missing-key", {"bucket": BUCKET}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("key-dotdot", "key ../../etc/passwd", event=_ce("key-dotdot", {"bucket": BUCKET, "key": "../../etc/passwd"}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("key-escape-sequence", "key with an ANSI escape (ESC[2J)",
         event=_ce("key-escape-sequence", {"bucket": BUCKET, "key": "calls/\x1b[2Jx.wav"}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("key-nul", "key with a NUL character", event=_ce("key-nul", {"bucket": BUCKET, "key": "calls/a\x00.wav"}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("key-1025", "key of 1025 characters", event=_ce("key-1025", {"bucket": BUCKET, "key": "k" * 1025}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("notif-encoded-dotdot", "MinIO notification, key %2e%2e%2fsecret.wav (decodes to ../)",
         event=lambda p: notification(BUCKET, "%2e%2e%2fsecret.wav", "notif-encoded-dotdot"),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("notif-double-encoded", "MinIO notification, key %252e%252e%252f (decoded once: a literal name)",
         event=lambda p: notification(BUCKET, f"{p}/%252e%252e%252fsecret.wav", "notif-double-encoded"),
         kafka="object_not_found", knative=(200, "object_not_found")),
    Case("notif-encoded-nul", "MinIO notification, key a%00b.wav",
         event=lambda p: notification(BUCKET, "a%00b.wav", "notif-encoded-nul"),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("notif-key-2000", "MinIO notification, key of 2000 characters",
         event=lambda p: notification(BUCKET, "n" * 2000, "notif-key-2000"),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("unknown-type", "binary CloudEvent of type com.example.unknown",
         event=_ce("unknown-type", {"bucket": BUCKET, "key": "a.wav"}, type="com.example.unknown"),
         kafka=("unsupported_event", DLQ), knative=(400, "unsupported_event")),
    Case("specversion-0.3", "binary CloudEvent, specversion 0.3",
         event=_ce("specversion-0.3", {"bucket": BUCKET, "key": "a.wav"}, specversion="0.3"),
         kafka=("unsupported_event", DLQ), knative=(400, "unsupported_event")),
    Case("specversion-2.0", "structured CloudEvent, specversion 2.0",
         event=lambda p: structured_event("hostile-specversion-2.0", {"bucket": BUCKET, "key": "a.wav"}, specversion="2.0"),
         kafka=("unsupported_event", DLQ), knative=(400, "unsupported_event")),
    Case("oversized-event", "a valid structured CloudEvent padded to 100 KiB (limits: 64 KiB)",
         event=lambda p: structured_event("hostile-oversized-event", {"bucket": BUCKET, "key": f"{p}/big.wav"}, pad=100 * 1024),
         kafka=("invalid_event", DLQ), knative=(413, "payload_too_large")),
    Case("bucket-not-allowed", "names diarization-results, not in S3_ALLOWED_BUCKETS",
         event=_ce("bucket-not-allowed", {"bucket": "diarization-results", "key": "results/x.json"}),
         kafka="access_denied", knative=(200, "access_denied")),
    Case("notif-bucket-not-allowed", "MinIO notification from diarization-results",
         event=lambda p: notification("diarization-results", "results%2Fx.json", "notif-bucket-not-allowed"),
         kafka="access_denied", knative=(200, "access_denied")),
    Case("object-missing", "names an object that does not exist", event=_obj("object-missing", "nowhere.wav"),
         kafka="object_not_found", knative=(200, "object_not_found")),
    Case("unicode-key-missing", "key música/日本語 ☃.wav (not there): non-ASCII reply headers",
         event=_obj("unicode-key-missing", "música/日本語 ☃.wav"),
         kafka="object_not_found", knative=(200, "object_not_found")),
    Case("delete-notification", "MinIO s3:ObjectRemoved:Delete notification",
         event=lambda p: notification(BUCKET, f"{p}/gone.wav", "delete-notification", "s3:ObjectRemoved:Delete"),
         kafka=IGNORED, knative=(202, IGNORED)),
    Case("kafkasource-dotdot", "KafkaSource-wrapped notification with key %2e%2e%2f (Kafka: a foreign type)",
         event=lambda p: kafka_source_wrapped("hostile-kafkasource-dotdot",
                                              notification(BUCKET, "%2e%2e%2fx.wav", "kafkasource-dotdot")),
         kafka=("unsupported_event", DLQ), knative=(200, "invalid_event")),
    Case("ce-id-not-utf8", "binary CloudEvent whose ce_id header is not UTF-8 (Kafka only)",
         event=_ce("ce-id-not-utf8", {"bucket": BUCKET, "key": "a.wav"}, id=b"\xff\xfe"),
         kafka=("invalid_event", DLQ)),
    Case("deep-nesting", "[ x 20000: JSON nested deeper than the parser's recursion limit",
         event=lambda p: raw(b"[" * 20_000),
         kafka=("invalid_event", DLQ), knative=(400, "invalid_event")),
    Case("ce-data-deep-nesting", "binary CloudEvent whose data is [ x 20000",
         event=_ce("ce-data-deep-nesting", b"[" * 20_000),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("structured-json-array", "content type application/cloudevents+json, body a JSON array",
         event=lambda p: raw(b"[1, 2, 3]", "application/cloudevents+json"),
         kafka=("invalid_event", DLQ), knative=(400, "invalid_event")),
    Case("key-lone-surrogate", 'key "\\ud800.wav": a lone UTF-16 surrogate, not encodable as UTF-8',
         event=_ce("key-lone-surrogate", b'{"bucket": "audio", "key": "\\ud800.wav"}'),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("metadata-5000-digits", "MinIO notification, x-amz-meta-num-speakers of 5000 digits",
         event=lambda p: notification(BUCKET, f"{p}/m.wav", "metadata-5000-digits",
                                      metadata={"X-Amz-Meta-Num-Speakers": "9" * 5000}),
         kafka="invalid_speaker_options", knative=(200, "invalid_speaker_options")),
    Case("key-empty-segment", "key a//b.wav (the store answers 400 Bad Request)",
         event=_obj("key-empty-segment", "a//b.wav"),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("key-1024-one-segment", "key of 1024 characters, no '/' (the schema's maximum; the store answers 400)",
         event=_ce("key-1024-one-segment", {"bucket": BUCKET, "key": "s" * 1024}),
         kafka="invalid_event", knative=(200, "invalid_event")),
    Case("version-id-garbage", "version_id not-a-version (the store answers 400)",
         event=_obj("version-id-garbage", "v.wav", version_id="not-a-version"),
         kafka="invalid_event", knative=(200, "invalid_event")),

    # --- HTTP-level: the shim's API (/v1/diarize) and its receiver (POST /)
    Case("no-file-field", "multipart with num_speakers only",
         request=lambda s: _post(s, files={"num_speakers": (None, "2")}), http=(400, "missing_file")),
    Case("two-files", "two file fields", request=lambda s: _post(s, files=[("file", ("a.wav", wav())), ("file", ("b.wav", wav()))]),
         http=(400, "missing_file")),
    Case("content-type-audio", "the WAV as the body, Content-Type audio/wav",
         request=lambda s: _post(s, data=wav(), headers={"Content-Type": "audio/wav"}), http=(415, "unsupported_media_type")),
    Case("no-content-type", "the WAV as the body, no Content-Type", request=lambda s: _post(s, data=wav()),
         http=(415, "unsupported_media_type")),
    Case("urlencoded", "application/x-www-form-urlencoded with a file field",
         request=lambda s: _post(s, data={"file": wav()[:100]}), http=(415, "unsupported_media_type")),
    Case("multipart-no-boundary", "multipart/form-data without a boundary",
         request=lambda s: _post(s, data=multipart_file_head("b") + wav(), headers={"Content-Type": "multipart/form-data"}),
         http=(400, "missing_file")),
    Case("multipart-truncated", "a multipart body cut inside the file part",
         request=lambda s: _post(s, data=multipart_file_head("b") + wav()[:2000],
                                 headers={"Content-Type": "multipart/form-data; boundary=b"}),
         http=(400, "missing_file")),
    Case("no-api-key", "no Authorization header", request=lambda s: _post(s, auth={}, files={"file": ("a.wav", wav())}),
         http=(401, "unauthorized")),
    Case("wrong-api-key", "Authorization: Bearer <wrong key>",
         request=lambda s: _post(s, auth={"Authorization": "Bearer not-the-key"}, files={"file": ("a.wav", wav())}),
         http=(401, "unauthorized")),
    Case("basic-scheme", "Authorization: Basic <the key>",
         request=lambda s: _post(s, auth={"Authorization": f"Basic {API_KEY}"}, files={"file": ("a.wav", wav())}),
         http=(401, "unauthorized")),
    Case("num-speakers-5000-digits", "form field num_speakers of 5000 digits",
         request=lambda s: _post(s, files={"file": ("a.wav", wav()), "num_speakers": (None, "9" * 5000)}),
         http=(400, "invalid_speaker_options")),
    Case("content-length-8gib", "Content-Length 8 GiB, 1 KiB sent: 413 before the body is read",
         request=lambda s: _raw_declared(s, "/v1/diarize", 8 * 1024**3), http=(413, "payload_too_large")),
    Case("chunked-over-limit", "chunked upload (no Content-Length) growing past MAX_AUDIO_BYTES",
         request=lambda s: _raw_chunked(s, "/v1/diarize", MAX_AUDIO_BYTES + 2 * 1024**2), http=(413, "payload_too_large")),
    Case("event-content-length-1gib", "POST / with Content-Length 1 GiB, 1 KiB sent",
         request=lambda s: _raw_declared(s, "/", 1024**3), knative=(413, "payload_too_large")),
    Case("event-chunked-over-limit", "POST / chunked (no Content-Length): a valid event padded to 256 KiB",
         request=lambda s: _raw_chunked(s, "/", 256 * 1024), knative=(413, "payload_too_large")),
    Case("body-cut-short", "Content-Length 10000, 100 bytes sent, then the client half-closes",
         request=lambda s: _raw_short(s, "/v1/diarize"), http=(400, "incomplete_body")),
    Case("event-body-cut-short", "POST / with Content-Length 10000, 100 bytes sent, then half-closed",
         request=lambda s: _raw_short(s, "/"), knative=EVENT_CUT),
    Case("slow-body", "headers, then the multipart body at 1 byte/s", slow=True,
         request=lambda s: _slow(s, "/v1/diarize", trickle=True), http=CUT),
    Case("stalled-body", "headers and 100 body bytes, then nothing", slow=True,
         request=lambda s: _slow(s, "/v1/diarize", trickle=False), http=CUT),
    Case("slow-headers", "the request line, then the headers at 1 byte/s", slow=True,
         request=lambda s: _slow_headers(s, trickle=True), http=CUT),
    Case("stalled-headers", "the request line and one header, then nothing", slow=True,
         request=lambda s: _slow_headers(s, trickle=False), http=CUT),
    Case("slow-event-body", "POST / headers, then the event at 1 byte/s", slow=True,
         request=lambda s: _slow(s, "/", trickle=True), knative=EVENT_CUT),
]
# fmt: on


def _doors(case: Case) -> str:
    return ", ".join(name for name in ("http", "kafka", "knative") if getattr(case, name) is not None)


def _show(expected: object) -> str:
    if expected is None:
        return "-"
    if isinstance(expected, tuple):
        return " ".join(str(part) for part in expected)
    return str(expected)


def corpus_table() -> str:
    """The corpus as a text table: input, then what each door must answer."""
    lines = [f"{'input':28} {'HTTP /v1/diarize':32} {'Kafka consumer':32} {'Knative receiver':32} what"]
    for case in CORPUS:
        lines.append(f"{case.id:28} {_show(case.http):32} {_show(case.kafka):32} {_show(case.knative):32} {case.what}")
    return "\n".join(lines)


# --- the doors' processes -----------------------------------------------------------------------


@dataclass
class Shim:
    """The gunicorn shim under test: its master process, the worker it started with, its log."""

    base: str
    port: int
    process: subprocess.Popen
    worker_pids: set[int]
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text()[-chars:]


@pytest.fixture(scope="module")
def shim(stack: Stack, settings, tmp_path_factory) -> Iterator[Shim]:
    """One shim for the module (as ``start_shim`` starts them): API key, small limits, few threads."""
    port = free_port()
    log = tmp_path_factory.mktemp("hostile-shim") / "shim.log"
    env = {
        **stack.env,
        **shim_env(settings.engine.model, port, API_KEY=API_KEY, RECEIVER_ENABLED="true", RECEIVER_TOKEN=SENDER_TOKEN),
        "MAX_AUDIO_BYTES": str(MAX_AUDIO_BYTES),
        "EVENT_MAX_BYTES": str(EVENT_MAX_BYTES),
        "HTTP_THREADS": str(HTTP_THREADS),
        "REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS),
        "BODY_READ_TIMEOUT_SECONDS": str(BODY_READ_TIMEOUT_SECONDS),
    }
    process = start_module("http_shim.server", env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/ready", process, timeout=600, log=log)
        workers = children(process.pid)
        assert len(workers) == 1, f"expected one gunicorn worker under {process.pid}, found {workers}"
        yield Shim(base, port, process, workers, log)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def consumer(stack: Stack, settings, tmp_path_factory) -> Iterator[ConsumerProcess]:
    """One consumer for the module (as ``start_consumer`` starts them) on fresh single-partition topics."""
    port = free_port()
    log = tmp_path_factory.mktemp("hostile-consumer") / "consumer.log"
    env = {
        **stack.env,
        **stack.topics("hostile", partitions=1),
        "DIARIZATION_MODEL": settings.engine.model,
        "KAFKA_GROUP_ID": f"hostile-{RUN}",
        "CONSUMER_PROBE_PORT": str(port),
        "RETRY_BACKOFF_MAX_SECONDS": "2",
        "SHUTDOWN_GRACE_SECONDS": "120",
        "KAFKA_MAX_MESSAGE_BYTES": str(KAFKA_MAX_MESSAGE_BYTES),
    }
    process = start_module("consumer.kafka.worker", env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", process, timeout=600, log=log)
        yield ConsumerProcess(process, env, log, f"http://127.0.0.1:{port}")
    finally:
        stop(process)


@pytest.fixture(scope="module")
def sample_bytes(sample) -> bytes:
    """pyannote's 30 s two-speaker sample: the valid input each door gets after its corpus."""
    return sample[0].read_bytes()


# --- talking to the shim ------------------------------------------------------------------------


def _post(shim: Shim, path: str = "/v1/diarize", auth: dict[str, str] | None = None, **kwargs: object) -> Reply:
    headers = {**(AUTH if auth is None else auth), **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    started = time.monotonic()
    try:
        response = requests.post(f"{shim.base}{path}", headers=headers, timeout=JOB_BOUND_S, **kwargs)  # type: ignore[arg-type]
    except requests.Timeout:
        return None, "no answer", time.monotonic() - started
    except requests.ConnectionError as exc:
        return None, f"connection error: {exc}", time.monotonic() - started
    return (*_outcome(response), time.monotonic() - started)


def _outcome(response: requests.Response) -> tuple[int, str]:
    """(status, error code or outcome) of an API response or a receiver reply."""
    if response.status_code == 202 and not response.content:  # the receiver's "nothing to do"
        return 202, IGNORED
    try:
        body = response.json()
    except ValueError:
        return response.status_code, f"non-JSON body {response.text[:120]!r}"
    ce_type = response.headers.get("ce-type", "")
    if ce_type.endswith(".failed"):
        return response.status_code, body["error"]["code"]
    if response.status_code == 200 and "segments" in body:  # a diarization, from either path
        silent = not body["segments"] and not body.get("speech_segments") and not body.get("num_speakers")
        return 200, SILENT if silent else COMPLETED
    if response.status_code == 202:
        return 202, str(body.get("status"))
    return response.status_code, (body.get("error") or {}).get("code", f"unexpected body {body!r:.120}")


def _raw_reply(answer: RawAnswer) -> Reply:
    if answer.status is None:
        return None, str(answer), answer.seconds
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = f"body {answer.body[:120]!r}"
    return answer.status, code, answer.seconds


def _raw_declared(shim: Shim, path: str, declared: int) -> Reply:
    """Declare ``declared`` bytes, send 1 KiB and no more: an answer at all shows the server
    did not wait for the body."""
    boundary = "hostile"
    head = request_head(
        "POST",
        path,
        {
            **(SENDER if path == "/" else AUTH),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(declared),
        },
    )
    first = multipart_file_head(boundary) + bytes(1024)
    return _raw_reply(raw_exchange(shim.port, head, [first], bound=REJECT_BOUND_S))


def _raw_chunked(shim: Shim, path: str, size: int) -> Reply:
    """A chunked body of ``size`` bytes, sent until the server answers."""
    if path == "/":  # a valid event, padded with JSON whitespace
        body = structured_event("hostile-chunked", {"bucket": BUCKET, "key": f"hostile/{RUN}/chunked.wav"}).body
        body = body[:-1] + b" " * (size - len(body)) + b"}"
        head = request_head(
            "POST", path, {**SENDER, "Content-Type": "application/cloudevents+json", "Transfer-Encoding": "chunked"}
        )
    else:
        boundary = "hostile"
        body = multipart_file_head(boundary) + bytes(size)
        head = request_head(
            "POST",
            path,
            {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}", "Transfer-Encoding": "chunked"},
        )
    pieces = chunked(body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024))
    return _raw_reply(raw_exchange(shim.port, head, pieces, bound=REJECT_BOUND_S))


def _slow(shim: Shim, path: str, trickle: bool) -> Reply:
    """Complete headers, then the body at one byte a second (or a first 100 bytes and nothing)."""
    if path == "/":
        headers = {
            **SENDER,
            "Content-Type": "application/cloudevents+json",
            "Content-Length": str(EVENT_MAX_BYTES - 1024),
        }
        first = b'{"specversion": "1.0", '
    else:
        headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=slow", "Content-Length": "100000"}
        first = multipart_file_head("slow") + wav()[:40]
    if trickle:
        pieces = (b"\x00" if path != "/" else b" " for _ in range(100_000))
        answer = raw_exchange(
            shim.port, request_head("POST", path, headers) + first, pieces, gap=1.0, bound=SLOW_CLIENT_BOUND_S
        )
    else:
        answer = raw_exchange(
            shim.port, request_head("POST", path, headers) + first[:100], [], bound=SLOW_CLIENT_BOUND_S
        )
    return _raw_reply(answer)


def _slow_headers(shim: Shim, trickle: bool) -> Reply:
    """The request line, then header bytes at one a second (or nothing more), never ending the headers."""
    head = b"POST /v1/diarize HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    pieces = (b"X-Slow-Header: " if i == 0 else b"a" for i in range(100_000)) if trickle else []
    return _raw_reply(raw_exchange(shim.port, head, pieces, gap=1.0, bound=SLOW_CLIENT_BOUND_S))


def _raw_short(shim: Shim, path: str) -> Reply:
    """Declare 10000 bytes, send 100, and half-close: the body ended early."""
    if path == "/":
        headers = {**SENDER, "Content-Type": "application/cloudevents+json", "Content-Length": "10000"}
    else:
        headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=short", "Content-Length": "10000"}
    body = (multipart_file_head("short") + wav())[:100]
    return _raw_reply(
        raw_exchange(shim.port, request_head("POST", path, headers), [body], half_close=True, bound=REJECT_BOUND_S)
    )


def _matches(expected: tuple[int, str] | str, status: int | None, outcome: str, seconds: float) -> bool:
    if expected == CUT:
        in_time = seconds <= SLOW_CLIENT_BOUND_S + 5
        return in_time and (
            status == 408 and outcome == "request_timeout" or status is None and outcome.startswith("closed")
        )
    want_status, want = expected  # type: ignore[misc]
    if status != want_status:
        return False
    return outcome in (COMPLETED, SILENT) if want == COMPLETED else outcome == want


def _check_rows(door: str, rows: list[tuple[str, object, int | None, str, float, float]]) -> list[str]:
    """Print one line per input; the lines of the inputs that got something else (or were late)."""
    bad = []
    print(f"\n{door}: {len(rows)} inputs")
    for case_id, expected, status, outcome, seconds, bound in rows:
        ok = _matches(expected, status, outcome, seconds) and seconds <= bound  # type: ignore[arg-type]
        line = f"{case_id:28} expected {_show(expected):32} got {status} {outcome} ({seconds:.1f} s)"
        print(("   ok  " if ok else "  BAD  ") + line)
        if not ok:
            bad.append(line)
    return bad


def _bound(expected: object) -> float:
    if expected == CUT:
        return SLOW_CLIENT_BOUND_S + 5
    return JOB_BOUND_S if isinstance(expected, tuple) and expected[1] in (COMPLETED, SILENT) else REJECT_BOUND_S


def _assert_shim_whole(shim: Shim) -> None:
    """The shim's master and its one worker are the ones it started with, and it is healthy."""
    assert shim.process.poll() is None, f"the shim exited:\n{shim.log_tail()}"
    assert children(shim.process.pid) == shim.worker_pids, (
        f"the gunicorn worker changed (crashed or was killed): {shim.worker_pids} -> "
        f"{children(shim.process.pid)}\n{shim.log_tail()}"
    )
    health = requests.get(f"{shim.base}/health", timeout=REJECT_BOUND_S)
    assert health.status_code == 200 and health.json()["model_loaded"] is True, health.text


# --- the tests ------------------------------------------------------------------------------------


def test_the_corpus_is_one_table_of_at_least_40_inputs():
    print(
        f"\n{corpus_table()}\n\n{len(CORPUS)} hostile inputs; per door: "
        + ", ".join(
            f"{door} {sum(getattr(c, door) is not None for c in CORPUS)}" for door in ("http", "kafka", "knative")
        )
    )
    assert len(CORPUS) >= 40
    assert len({case.id for case in CORPUS}) == len(CORPUS), "case ids must be unique"
    for case in CORPUS:
        assert _doors(case), f"{case.id} applies to no door"
        assert sum(x is not None for x in (case.audio, case.event, case.request)) == (0 if case.streamed else 1), (
            case.id
        )
        assert case.request is None or (case.http is None) != (case.knative is None), f"{case.id}: one HTTP door"


def test_http_door(shim: Shim, sample_bytes: bytes):
    """Every audio and HTTP-level input through POST /v1/diarize; then the shim is whole and serves."""
    rows = []
    for case in CORPUS:
        if case.http is None or case.slow:
            continue
        if case.audio is not None:
            fields = {"audio_stream": (None, str(case.audio_stream))} if case.audio_stream else {}
            status, outcome, seconds = _post(shim, files={"file": (case.filename, case.audio()), **fields})
        else:
            status, outcome, seconds = case.request(shim)  # type: ignore[misc]
        rows.append((case.id, case.http, status, outcome, seconds, _bound(case.http)))
    bad = _check_rows("HTTP door (POST /v1/diarize)", rows)
    _assert_shim_whole(shim)
    status, outcome, seconds = _post(shim, files={"file": ("sample.wav", sample_bytes)})
    print(f"valid request after the corpus: {status} {outcome} ({seconds:.1f} s)")
    assert (status, outcome) == (200, COMPLETED), "the valid request after the corpus did not complete"
    assert not bad, (
        "inputs that got another answer than expected:\n" + "\n".join(bad) + f"\n--- shim log\n{shim.log_tail()}"
    )


def test_knative_door(stack: Stack, shim: Shim, sample_bytes: bytes):
    """Every audio and event input through the receiver (POST /, reply mode); then the shim is whole and serves."""
    prefix = f"hostile/{RUN}/knative"
    rows = []
    for case in CORPUS:
        if case.knative is None or case.slow:
            continue
        if case.request is not None:
            status, outcome, seconds = case.request(shim)
        else:
            message = _event_for(stack, case, prefix)
            status, outcome, seconds = _post(shim, "/", auth=SENDER, data=message.body, headers=message.http())
        rows.append((case.id, case.knative, status, outcome, seconds, _bound(case.knative)))
    bad = _check_rows("Knative door (POST /)", rows)
    _assert_shim_whole(shim)
    key = f"{prefix}/valid-last/sample.wav"
    stack.upload(key, sample_bytes)
    message = binary_event("hostile-valid-last", {"bucket": BUCKET, "key": key})
    status, outcome, seconds = _post(shim, "/", auth=SENDER, data=message.body, headers=message.http())
    print(f"valid event after the corpus: {status} {outcome} ({seconds:.1f} s)")
    assert (status, outcome) == (200, COMPLETED), "the valid event after the corpus did not complete"
    assert not bad, (
        "inputs that got another answer than expected:\n" + "\n".join(bad) + f"\n--- shim log\n{shim.log_tail()}"
    )


def _event_for(stack: Stack, case: Case, prefix: str) -> Message:
    """The case's message; for audio, the bytes are uploaded first and named by a binary CloudEvent."""
    if case.audio is not None:
        key = f"{prefix}/{case.id}/{case.filename}"
        stack.upload(key, case.audio())
        options = {"options": {"audio_stream": case.audio_stream}} if case.audio_stream else {}
        return binary_event(f"hostile-{case.id}", {"bucket": BUCKET, "key": key, **options})
    assert case.event is not None, case.id
    return case.event(prefix)


def _wait_for_result(
    consumer: ConsumerProcess, results: TopicReader, input_id: str, bound: float, stall: float | None = None
) -> list:
    """Read results until one answers ``input_id``; fail at once if the consumer dies, and after
    ``stall`` seconds without any new result event (a consumer stuck on one input)."""
    started = time.monotonic()
    last_news, seen = started, 0
    while time.monotonic() - started < bound:
        results.drain(0.5)
        found = [e for e in results.events if not e.type.endswith(".progress") and e.data["input"]["id"] == input_id]
        if found:
            return found
        if consumer.process.poll() is not None:
            raise AssertionError(
                f"the consumer exited with {consumer.process.returncode} before answering {input_id}:\n{consumer.log_tail()}"
            )
        if len(results.events) != seen:
            last_news, seen = time.monotonic(), len(results.events)
        elif stall is not None and time.monotonic() - last_news > stall:
            raise AssertionError(
                f"no new result event for {stall:.0f} s, still waiting for {input_id}:\n{consumer.log_tail()}"
            )
    raise AssertionError(f"no result for {input_id} within {bound:.0f} s:\n{consumer.log_tail()}")


def test_three_hours_of_silence_through_kafka(stack: Stack, consumer: ConsumerProcess, reader, tmp_path: Path):
    """3 h of silence: completed with no speech, and the consumer's peak RSS stays bounded."""
    [case] = [c for c in CORPUS if c.streamed]
    path = tmp_path / "silence-3h.wav"
    size = write_silent_wav(path, 3 * 3600)
    key = f"hostile/{RUN}/kafka/{case.id}/silence.wav"
    stack.minio().fput_object(BUCKET, key, str(path))
    path.unlink()
    results = reader(consumer.env["KAFKA_RESULTS_TOPIC"])
    message = binary_event(f"hostile-{case.id}", {"bucket": BUCKET, "key": key})
    started = time.monotonic()
    stack.produce(consumer.input_topic, message.body, case.id.encode(), message.kafka())
    [result] = _wait_for_result(consumer, results, message.input_id, SILENCE_3H_BOUND_S)  # type: ignore[arg-type]
    seconds = time.monotonic() - started
    peak = peak_rss_bytes(consumer.process.pid)
    print(
        f"\n3 h of silence ({size / 1024**2:.0f} MiB): {result.type}, {seconds:.0f} s, "
        f"consumer peak RSS (VmHWM) {peak / 1024**3:.2f} GiB"
    )
    assert result.type == "dev.diarization.job.completed", result.data
    assert result.data["segments"] == [] and result.data["speech_segments"] == [], result.data
    assert result.data["duration"] == pytest.approx(3 * 3600, abs=0.01)
    assert peak < PEAK_RSS_LIMIT, f"the consumer's peak RSS was {peak / 1024**3:.2f} GiB"


def test_kafka_door(stack: Stack, consumer: ConsumerProcess, reader, sample_bytes: bytes):
    """Every audio and event input on the consumer's input topic, then a valid one; each answered exactly once."""
    prefix = f"hostile/{RUN}/kafka"
    topic = consumer.input_topic
    results = reader(consumer.env["KAFKA_RESULTS_TOPIC"])
    first_offset = max(stack.committed(consumer.group, topic).get(0, -1), 0)
    sent: list[tuple[Case, Message, float]] = []
    for case in CORPUS:
        if case.kafka is None or case.streamed:
            continue
        message = _event_for(stack, case, prefix)
        stack.produce(topic, message.body, case.id.encode(), message.kafka())
        sent.append((case, message, time.time()))
    key = f"{prefix}/valid-last/sample.wav"
    stack.upload(key, sample_bytes)
    valid = binary_event("hostile-valid-last", {"bucket": BUCKET, "key": key})
    stack.produce(topic, valid.body, b"valid-last", valid.kafka())
    try:
        [last] = _wait_for_result(consumer, results, "hostile-valid-last", KAFKA_CORPUS_BOUND_S, KAFKA_STALL_S)
        stuck = ""
    except AssertionError as exc:  # report every input's answer, then fail
        last, stuck = None, f"{_stuck_at(stack, consumer, sent, first_offset)}\n{exc}"
    results.drain(3)  # a duplicate would arrive right behind
    dead_letters = read_raw(stack.bootstrap, consumer.env["KAFKA_DLQ_TOPIC"], 5)
    rows, bad = _kafka_rows(sent, results, dead_letters)
    print(f"\nKafka door: {len(sent)} inputs")
    print("\n".join(rows))
    assert last is not None, stuck + "\ninputs answered otherwise than expected:\n" + "\n".join(bad)
    print(f"valid event after the corpus: {last.type}")
    assert last.type == "dev.diarization.job.completed", last.data
    # the dead-letter topic holds exactly the inputs that are no event, with their codes
    dead = {key.decode(): headers.get("dlq-error-code", b"").decode() for key, _, headers in dead_letters if key}
    want_dead = {c.id: c.kafka[0] for c, _, _ in sent if isinstance(c.kafka, tuple)}
    if dead != want_dead:
        bad.append(f"the dead-letter topic holds {dead}, expected {want_dead}")
    # the group's committed offset moved past every input and the valid one
    want_offset = first_offset + len(sent) + 1
    deadline = time.monotonic() + 30
    while (offset := stack.committed(consumer.group, topic).get(0)) != want_offset and time.monotonic() < deadline:
        time.sleep(0.5)
    if offset != want_offset:
        bad.append(f"committed offset {offset}, expected {want_offset}")
    assert consumer.process.poll() is None, f"the consumer exited:\n{consumer.log_tail()}"
    health = requests.get(f"{consumer.probe}/health", timeout=10)
    assert health.status_code == 200, health.text
    assert not bad, (
        "inputs answered otherwise than expected:\n" + "\n".join(bad) + f"\n--- consumer log\n{consumer.log_tail()}"
    )


def _kafka_rows(
    sent: list[tuple[Case, Message, float]], results: TopicReader, dead_letters: list
) -> tuple[list[str], list[str]]:
    """One line per input, and the lines of those answered otherwise than expected (or late, or twice)."""
    rows, bad = [], []
    dead_keys = {key for key, _, _ in dead_letters}
    for case, message, produced in sent:
        record_key = case.id.encode()
        answers = [
            e
            for e in results.events
            if not e.type.endswith(".progress")
            and (
                (e.data["input"]["type"] == "unparseable" and e.key == record_key)
                or (message.input_id is not None and e.data["input"]["id"] == message.input_id)
            )
        ]
        expected = case.kafka
        want_code, want_dlq = (expected[0], True) if isinstance(expected, tuple) else (expected, False)
        got = [_kafka_outcome(e) for e in answers]
        dead = record_key in dead_keys
        late = [round(_event_time(e) - produced, 1) for e in answers]
        if want_code == IGNORED:
            ok = not answers and not dead
        else:
            ok = len(answers) == 1 and (got[0] == want_code or want_code == COMPLETED and got[0] == SILENT)
            ok = ok and dead == want_dlq and all(s <= KAFKA_CORPUS_BOUND_S for s in late)
        line = (
            f"{case.id:28} expected {_show(expected):32} got {got or 'no result'}"
            f"{' + dead letter' if dead else ''} (answered after {late} s)"
        )
        rows.append(("   ok  " if ok else "  BAD  ") + line)
        if not ok:
            bad.append(line)
    return rows, bad


def _kafka_outcome(event) -> str:
    if event.type.endswith(".failed"):
        return event.data["error"]["code"]
    silent = not event.data["segments"] and not event.data["speech_segments"]
    return SILENT if silent else COMPLETED


def _event_time(event) -> float:
    return dt.datetime.fromisoformat(event.headers["ce_time"].decode()).timestamp()


def _stuck_at(
    stack: Stack, consumer: ConsumerProcess, sent: list[tuple[Case, Message, float]], first_offset: int
) -> str:
    """Which input the consumer is stuck on (or died on): the one at its committed offset."""
    offset = stack.committed(consumer.group, consumer.input_topic).get(0, -1)
    index = max(offset, first_offset) - first_offset
    alive = "alive" if consumer.process.poll() is None else f"exited with {consumer.process.returncode}"
    if 0 <= index < len(sent):
        case = sent[index][0]
        return f"the consumer ({alive}) never got past input {index} of {len(sent)}: {case.id} ({case.what})"
    return f"the consumer ({alive}) committed offset {offset}"


def test_slow_clients_are_cut_off(shim: Shim):
    """As many slow clients as the shim has threads: each is cut off (408 or closed; an event gets 503,
    which Knative retries) within the bound, and the shim answers again afterwards. Slow-loris style
    clients must not hold threads forever."""
    slow = [case for case in CORPUS if case.slow]
    assert len(slow) == HTTP_THREADS, "one slow client per request thread"
    with ThreadPoolExecutor(len(slow) + 1) as pool:
        futures = {case.id: pool.submit(case.request, shim) for case in slow}  # type: ignore[arg-type]
        time.sleep(3)  # all of them connected and holding a thread

        def health() -> tuple[int | None, float]:
            started = time.monotonic()
            try:
                return requests.get(
                    f"{shim.base}/health", timeout=SLOW_CLIENT_BOUND_S + 10
                ).status_code, time.monotonic() - started
            except requests.RequestException:
                return None, time.monotonic() - started

        probe = pool.submit(health)
        rows = []
        for case in slow:
            status, outcome, seconds = futures[case.id].result()
            expected = case.http if case.http is not None else case.knative
            rows.append((case.id, expected, status, outcome, seconds, SLOW_CLIENT_BOUND_S + 5))
        health_status, health_seconds = probe.result()
    bad = _check_rows("slow clients", rows)
    print(f"GET /health while they were attached: {health_status} after {health_seconds:.1f} s")
    if health_status != 200:
        bad.append(f"GET /health got no answer within {SLOW_CLIENT_BOUND_S + 10} s while slow clients held the threads")
    assert not bad, (
        f"slow clients were not cut off within {SLOW_CLIENT_BOUND_S} s (408 or a closed connection)\n"
        + "\n".join(bad)
        + f"\n--- shim log\n{shim.log_tail()}"
    )
    _assert_shim_whole(shim)

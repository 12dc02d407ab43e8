"""One option parser for every door: each spelling means the same on the form, in object
metadata, in event data and in the settings, or is refused on all of them."""

from __future__ import annotations

import json

import pytest
from werkzeug.datastructures import MultiDict

from consumer import codec
from consumer.config import FALSE_WORDS, TRUE_WORDS, Settings, SettingsError, parse_flag
from consumer.events import AudioJobRequested, JobFailed
from consumer.options import JobOptions, Task, parse_options
from http_shim.api import options_from_form

TRUE = sorted(TRUE_WORDS | {w.upper() for w in TRUE_WORDS} | {" True ", "Yes"})
FALSE = sorted(FALSE_WORDS | {w.upper() for w in FALSE_WORDS} | {" False ", "Off"})
BAD = ["maybe", "2", "tru", "none", "y", "-1"]


def via_form(fields: dict[str, str]) -> JobOptions:
    return options_from_form(MultiDict(fields), tasks=frozenset({Task.DIARIZATION, Task.VAD}))


def via_metadata(fields: dict[str, str]) -> JobOptions:
    """An upload's ``x-amz-meta-*`` metadata in a MinIO notification on Kafka."""
    metadata = {f"X-Amz-Meta-{name.replace('_', '-').title()}": value for name, value in fields.items()}
    obj = {"key": "a.wav", "size": 100, "eTag": "e", "sequencer": "1", "userMetadata": metadata}
    record = {
        "eventName": "s3:ObjectCreated:Put",
        "eventSource": "minio:s3",
        "s3": {"bucket": {"name": "audio"}, "object": obj},
    }
    [job] = codec.decode_kafka(
        None, None, json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": [record]}).encode()
    )
    if isinstance(job, JobFailed):
        raise _Refused(job.code)
    assert isinstance(job, AudioJobRequested)
    return job.options


class _Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def refusal(door, fields: dict[str, str]) -> str:
    """The error code a door answers ``fields`` with."""
    try:
        door(fields)
    except _Refused as exc:
        return exc.code
    except Exception as exc:  # the form raises the project's errors directly
        return getattr(exc, "code", type(exc).__name__)
    raise AssertionError(f"{door.__name__} accepted {fields}")


@pytest.mark.parametrize("door", [via_form, via_metadata])
@pytest.mark.parametrize(
    ("spelling", "expected"), [(w, True) for w in TRUE] + [(w, False) for w in FALSE] + [("", False)]
)
def test_every_flag_spelling_means_the_same_on_every_text_door(door, spelling, expected):
    assert door({"exclusive": spelling}).exclusive is expected


@pytest.mark.parametrize("door", [via_form, via_metadata])
@pytest.mark.parametrize("spelling", BAD)
def test_a_bad_flag_spelling_is_refused_on_every_text_door(door, spelling):
    assert refusal(door, {"exclusive": spelling}) == "invalid_request"


@pytest.mark.parametrize("spelling", [*TRUE, *FALSE])
def test_settings_take_the_same_spellings(spelling):
    assert Settings.from_env({"MODEL_WARMUP": spelling}).engine.warmup is (spelling.strip().lower() in TRUE_WORDS)


@pytest.mark.parametrize("spelling", BAD)
def test_settings_refuse_the_same_bad_spellings(spelling):
    with pytest.raises(SettingsError, match="MODEL_WARMUP"):
        Settings.from_env({"MODEL_WARMUP": spelling})


@pytest.mark.parametrize("door", [via_form, via_metadata])
@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"num_speakers": "two"}, "invalid_speaker_options"),
        ({"num_speakers": "0"}, "invalid_speaker_options"),
        ({"num_speakers": "101"}, "invalid_speaker_options"),
        ({"num_speakers": "2.5"}, "invalid_speaker_options"),
        ({"num_speakers": "1" * 7}, "invalid_speaker_options"),
        ({"num_speakers": "٣"}, "invalid_speaker_options"),  # a digit, but not ASCII
        ({"min_speakers": "3", "max_speakers": "2"}, "invalid_speaker_options"),
        ({"num_speakers": "2", "max_speakers": "3"}, "invalid_speaker_options"),
    ],
)
def test_speaker_counts_are_refused_alike_on_every_text_door(door, fields, code):
    assert refusal(door, fields) == code


@pytest.mark.parametrize("door", [via_form, via_metadata])
def test_speaker_counts_are_read_alike_on_every_text_door(door):
    assert door({"num_speakers": " 3 "}).num_speakers == 3
    assert (
        door({"min_speakers": "2", "max_speakers": "5"}).min_speakers,
        door({"max_speakers": "5"}).max_speakers,
    ) == (2, 5)


def test_event_data_takes_json_values_and_its_schema_refuses_strings():
    def via_event(options: dict) -> codec.Decoded:
        data = {"bucket": "audio", "key": "a.wav", "options": options}
        event = {"specversion": "1.0", "id": "e", "source": "/s", "type": codec.TYPE_UPLOADED, "data": data}
        [item] = codec.decode_kafka(None, None, json.dumps(event).encode())
        return item

    job = via_event({"exclusive": True, "num_speakers": 2})
    assert isinstance(job, AudioJobRequested) and job.options == JobOptions(num_speakers=2, exclusive=True)
    for options in ({"exclusive": "true"}, {"num_speakers": "2"}, {"num_speakers": 0}, {"tasks": ["nope"]}):
        failed = via_event(options)
        assert isinstance(failed, JobFailed) and failed.code == "invalid_event", options


def test_tasks_diarization_implies_vad_and_unknown_tasks_are_refused():
    assert parse_options({"tasks": "diarization"}).tasks == {Task.DIARIZATION, Task.VAD}
    assert parse_options({"tasks": ["vad"]}).tasks == {Task.VAD}
    assert parse_options({}).tasks == {Task.DIARIZATION, Task.VAD}
    assert refusal(via_metadata, {"tasks": "vad,transcribe"}) == "invalid_request"
    assert refusal(via_metadata, {"tasks": " , "}) == "invalid_speaker_options"  # no task at all


def test_parse_flag():
    assert [parse_flag(w) for w in ("ON", " no ", "")] == [True, False, None]
    with pytest.raises(ValueError):
        parse_flag("maybe")


@pytest.mark.parametrize("door", [via_form, via_metadata])
def test_audio_stream_is_read_alike_on_every_text_door(door):
    assert door({"audio_stream": " 3 "}).audio_stream == 3
    assert door({"audio_stream": ""}).audio_stream == 0
    assert door({}).audio_stream == 0


@pytest.mark.parametrize("door", [via_form, via_metadata])
@pytest.mark.parametrize("value", ["-1", "64", "1.5", "first", "true"])
def test_a_bad_audio_stream_is_refused_on_every_text_door(door, value):
    assert refusal(door, {"audio_stream": value}) == "invalid_request"


def test_audio_stream_in_event_data_and_in_the_result_digest():
    from consumer.event_job import result_digest
    from consumer.events import ObjectRef

    def options_digest(options: JobOptions) -> str:
        return result_digest(ObjectRef("audio", "a.mkv", None, "etag", 1), options, "m", "fingerprint")

    data = {"bucket": "audio", "key": "a.mkv", "options": {"audio_stream": 2}}
    event = {"specversion": "1.0", "id": "e", "source": "/s", "type": codec.TYPE_UPLOADED, "data": data}
    [job] = codec.decode_kafka(None, None, json.dumps(event).encode())
    assert isinstance(job, AudioJobRequested) and job.options.audio_stream == 2
    for bad in ("2", -1, 64, True):
        data["options"] = {"audio_stream": bad}
        [failed] = codec.decode_kafka(None, None, json.dumps(event).encode())
        assert isinstance(failed, JobFailed) and failed.code == "invalid_event", bad
    # another stream is another result; the first stream keeps the digest jobs had before the option
    assert options_digest(JobOptions(audio_stream=2)) != options_digest(JobOptions())
    assert JobOptions(audio_stream=2).to_dict()["audio_stream"] == 2
    assert "audio_stream" not in JobOptions().to_dict()

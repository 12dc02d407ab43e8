"""Results cannot overwrite each other (real consumer, real MinIO): each (bucket, key, version,
options) has its own result location, and a repeated job is answered from its own result."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.conversation import conversation
from tests.support.faults import COMPLETED, result_prefix
from tests.support.stack import cloudevent_headers

pytestmark = pytest.mark.integration

OTHER_BUCKET = "audio-other"


def test_vad_and_full_diarization_of_one_key_and_one_key_in_two_buckets_keep_their_own_results(
    stack, start_consumer, reader
):
    minio = stack.minio()
    if not minio.bucket_exists(OTHER_BUCKET):
        minio.make_bucket(OTHER_BUCKET)
    topics = stack.topics("layout", partitions=1)
    upload_bucket = stack.env["S3_UPLOAD_BUCKET"]
    consumer = start_consumer({**topics, "S3_ALLOWED_BUCKETS": f"{upload_bucket},{OTHER_BUCKET}"})
    key = f"layout/{uuid.uuid4().hex[:8]}/x.wav"
    two = conversation(num_speakers=2, duration=12, seed=401).wav.read_bytes()
    three = conversation(num_speakers=3, duration=20, seed=402).wav.read_bytes()
    stack.upload(key, two)
    stack.upload(key, three, bucket=OTHER_BUCKET)
    jobs = {
        "full": (upload_bucket, None),
        "vad": (upload_bucket, {"tasks": ["vad"]}),
        "other-bucket": (OTHER_BUCKET, None),
        "vad-again": (upload_bucket, {"tasks": ["vad"]}),
        "full-again": (upload_bucket, None),
    }
    ids = {name: f"layout-{name}-{uuid.uuid4().hex[:6]}" for name in jobs}
    for name, (bucket, options) in jobs.items():
        data = {"bucket": bucket, "key": key, **({"options": options} if options else {})}
        stack.produce(
            topics["KAFKA_INPUT_TOPIC"], json.dumps(data).encode(), key.encode(), cloudevent_headers(ids[name])
        )
    results = reader(topics["KAFKA_RESULTS_TOPIC"])
    results.wait_for(lambda events: all(_answer(events, i) for i in ids.values()), 300, "five results")
    got = {name: _answer(results.events, ids[name]).data for name in jobs}
    assert all(data["status"] == "completed" for data in got.values()), got

    full, vad, other = got["full"], got["vad"], got["other-bucket"]
    locations = {name: data["results"]["json"] for name, data in got.items()}
    assert len({locations["full"], locations["vad"], locations["other-bucket"]}) == 3, locations
    assert locations["full"].startswith(result_prefix(stack, key)) and locations["vad"].startswith(
        result_prefix(stack, key)
    )
    assert locations["other-bucket"].startswith(result_prefix(stack, key, OTHER_BUCKET))
    assert full["segments"] and full["num_speakers"] == 2 and vad["segments"] == [] and vad["speech_segments"]
    assert other["object"]["bucket"] == OTHER_BUCKET and other["num_speakers"] == 3
    assert other["object"]["etag"] != full["object"]["etag"]
    # the repeats are answered from their own result, not from whichever job ran last
    assert got["vad-again"]["reused"] and got["full-again"]["reused"]
    assert got["vad-again"]["results"] == vad["results"] and got["vad-again"]["segments"] == []
    assert got["full-again"]["results"] == full["results"] and got["full-again"]["segments"] == full["segments"]
    assert consumer.metric('diarization_jobs_total{outcome="reused",task="event"}') == 2
    # every stored document is still the one its job wrote, with the RTTM it names
    bucket = stack.env["S3_RESULTS_BUCKET"]
    for name in ("full", "vad", "other-bucket"):
        stored = json.loads(minio.get_object(bucket, got[name]["results"]["json"]).read())
        assert stored["segments"] == got[name]["segments"] and stored["options"] == got[name]["options"]
        rttm = minio.get_object(bucket, stored["results"]["rttm"]).read().decode()
        assert len(rttm.splitlines()) == len(stored["segments"]), name


def _answer(events, input_id: str):
    mine = [e for e in events if e.type == COMPLETED or e.type.endswith(".failed")]
    found = [e for e in mine if e.data["input"]["id"] == input_id]
    return found[0] if found else None

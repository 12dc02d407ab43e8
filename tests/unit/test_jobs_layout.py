"""Where a job lives in the store, and its ids (pure rules of ``consumer.jobs``)."""

from __future__ import annotations

from consumer.config import StorageSettings
from consumer.events import ObjectRef
from consumer.jobs import JobLayout, is_job_id, new_job_id

LAYOUT = JobLayout.from_settings(StorageSettings())


def test_job_ids_sort_newest_first_and_have_one_shape():
    older, newer = new_job_id(now=1_700_000_000.0), new_job_id(now=1_700_000_000.001)
    assert newer < older
    assert is_job_id(older) and is_job_id(newer) and older != new_job_id(now=1_700_000_000.0)
    for text in ("", "../x", older + "0", older.upper(), older[:-1] + "g"):
        assert not is_job_id(text), text


def test_a_jobs_objects_are_under_its_own_prefixes():
    job_id = new_job_id()
    assert LAYOUT.audio(job_id) == ObjectRef("audio", f"jobs/{job_id}/audio")
    assert LAYOUT.record_key(job_id) == f"results/jobs/{job_id}.json"
    assert LAYOUT.results_prefix_of(job_id) == f"results/audio/jobs/{job_id}/audio/"
    assert LAYOUT.state_key(job_id).startswith(LAYOUT.results_prefix_of(job_id))


def test_only_a_jobs_audio_is_a_job():
    job_id = new_job_id()
    assert LAYOUT.job_of(LAYOUT.audio(job_id)) == job_id
    for ref in (
        ObjectRef("audio", f"jobs/{job_id}/other"),
        ObjectRef("other-bucket", f"jobs/{job_id}/audio"),
        ObjectRef("audio", f"calls/{job_id}/audio"),
        ObjectRef("audio", "jobs/not-an-id/audio"),
    ):
        assert LAYOUT.job_of(ref) is None, ref
